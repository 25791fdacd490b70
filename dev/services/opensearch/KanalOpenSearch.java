/*
 * Starts one OpenSearch node from the jars of dev/maven/opensearch/pom.xml, the way the
 * distribution's bootstrap would, minus what a throw-away development node does not need
 * (the security manager, bootstrap checks, plugins other than the netty4 transport, which
 * the distribution ships as a module and which is loaded here from the classpath).
 *
 * Usage: java -cp <lib>/*:<dir> KanalOpenSearch HOME HOST HTTP_PORT TRANSPORT_PORT
 */
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

public final class KanalOpenSearch extends Node {
    private KanalOpenSearch(Environment environment) {
        super(environment, List.of(Netty4Plugin.class), true);
    }

    public static void main(String[] args) throws Exception {
        Path home = Path.of(args[0]).toAbsolutePath();
        Files.createDirectories(home.resolve("config"));
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "kanal-dev")
            .put("node.name", "kanal-dev")
            .put("network.host", args[1])
            .put("http.port", args[2])
            .put("transport.port", args[3])
            .put("discovery.type", "single-node")
            // a development node on a shared disk: never turn indices read-only
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", true)
            .build();
        LogConfigurator.registerErrorListener();
        LogConfigurator.configureWithoutConfig(settings);
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings, Map.of(), home.resolve("config"), () -> "kanal-dev");
        Node node = new KanalOpenSearch(environment);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }));
        node.start();
        System.out.println("KanalOpenSearch: started on http://" + args[1] + ":" + args[2]);
        stopped.await();
    }
}
