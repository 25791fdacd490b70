// Prints what Apache Kafka Connect's JsonConverter writes for Decimal values, one JSON
// line per argument "<scale> <value>": the bytes under decimal.format BASE64 and NUMERIC.
// Run by record_json_converter.py with the reference worker's jars on the class path.

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.json.JsonConverter;

public class JsonConverterDecimals {
    public static void main(String[] args) {
        for (String arg : args) {
            String[] parts = arg.split(" ", 2);
            int scale = Integer.parseInt(parts[0]);
            BigDecimal value = new BigDecimal(parts[1]).setScale(scale);
            StringBuilder line = new StringBuilder("{\"scale\": " + scale + ", \"value\": \""
                                                   + parts[1] + "\"");
            for (String format : new String[] {"BASE64", "NUMERIC"}) {
                JsonConverter converter = new JsonConverter();
                converter.configure(Map.of("schemas.enable", "false", "decimal.format", format),
                                    false);
                String written = new String(
                    converter.fromConnectData("t", Decimal.schema(scale), value),
                    StandardCharsets.UTF_8);
                line.append(", \"").append(format).append("\": \"")
                    .append(written.replace("\"", "\\\"")).append("\"");
            }
            System.out.println(line.append("}"));
        }
    }
}
