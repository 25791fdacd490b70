import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_matches_the_models() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "dev" / "config_reference.py"),
                             "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
