"""Record what Apache Kafka Connect's JsonConverter writes for Decimal values.

Runs ``JsonConverterDecimals.java`` on the jars of the reference worker that
``dev/stack up connect`` installs, and writes
``tests/golden/converters/json-converter-decimals.json``,
which ``tests/unit/test_converters.py`` compares Kanal's JsonConverter with:

    .venv/bin/python dev/golden/record_json_converter.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "golden" / "converters" / "json-converter-decimals.json"
PROBE = Path(__file__).with_name("JsonConverterDecimals.java")
CASES = [(2, "12.34"), (2, "-0.05"), (-3, "1E+3"), (8, "0.00000001"), (0, "0"),
         (1, "123456789012345678901234567890.5"), (4, "-987654321.1234")]
"""(scale, value): small, negative, negative scale, tiny, zero, and beyond a double."""


def connect_lib() -> Path:
    cache = Path(os.environ.get("KANAL_CACHE", Path.home() / ".cache" / "kanal"))
    libs = sorted((cache / "connect").glob("*/lib"), key=lambda p: p.stat().st_mtime)
    if not libs:
        sys.exit("no reference worker jars: run dev/stack up connect first")
    return libs[-1]


def main() -> int:
    java = shutil.which("java")
    if java is None:
        sys.exit("java is needed to run the probe (dev/stack up connect installs one)")
    classpath = os.pathsep.join(str(jar) for jar in sorted(connect_lib().glob("*.jar")))
    out = subprocess.run([java, "-cp", classpath, str(PROBE),
                          *[f"{scale} {value}" for scale, value in CASES]],
                         capture_output=True, text=True, check=True, timeout=120)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    FIXTURE.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"{FIXTURE.relative_to(ROOT)}: {len(rows)} case(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
