"""Dependencies: the lock file the image installs from, and the extras that group what
one component needs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from kanal_worker.runtime.registry import missing_extra

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(),
                      re.MULTILINE)
    return {normalize(name): version for name, version in pins}


def test_the_lock_pins_every_requirement_within_its_range() -> None:
    """A dependency added to pyproject.toml without `make lock` fails here."""
    extras = PROJECT["project"]["optional-dependencies"]
    declared = [*PROJECT["project"]["dependencies"], *PROJECT["build-system"]["requires"],
                *(r for name, group in extras.items() if name != "dev" for r in group)]
    pins = locked()
    for text in declared:
        requirement = Requirement(text)
        name = normalize(requirement.name)
        if name == "kanal":
            continue
        assert name in pins, f"{text} is not in requirements.lock: run make lock"
        assert requirement.specifier.contains(pins[name]), (
            f"requirements.lock pins {name}=={pins[name]}, outside {text}: run make lock")


def test_every_pin_has_hashes() -> None:
    text = (ROOT / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert entries
    for entry in entries:
        assert "==" in entry and "--hash=sha256:" in entry, entry.splitlines()[0]


def test_all_is_every_other_runtime_extra() -> None:
    extras = PROJECT["project"]["optional-dependencies"]
    (everything,) = extras["all"]
    assert set(Requirement(everything).extras) == set(extras) - {"all", "dev"}


@pytest.mark.parametrize(("module", "extra"), [
    ("pyarrow", "parquet"), ("pyarrow.parquet", "parquet"), ("fastavro", "avro"),
    ("azure", "azure"), ("azure.storage.blob", "azure"), ("azure.identity", "azure"),
    ("fastapi", "rest"), ("uvicorn", "rest"), ("kubernetes.client", "kubernetes"),
    ("kopf", "operator"), ("cryptography.hazmat.primitives", "tls"),
    ("opensearchpy", "elasticsearch"),
    ("google.cloud.storage", "gcs"), ("fsspec.implementations.webhdfs", "hdfs"),
    ("cachetools", "schemaregistry"), ("jsonschema", "schemaregistry"),
])
def test_a_missing_module_names_its_extra(module: str, extra: str) -> None:
    hint = missing_extra(ModuleNotFoundError(f"No module named '{module}'", name=module))
    assert hint and f"pip install 'kanal[{extra}]'" in hint


@pytest.mark.parametrize("module", ["yaml", "confluent_kafka", "kanal_worker.nothing", "x"])
def test_modules_of_no_extra_are_left_alone(module: str) -> None:
    assert missing_extra(ModuleNotFoundError("x", name=module)) is None


def kanal_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kanal ARGS` in a Python where ``module`` cannot be imported, as if its extra were
    not installed."""
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv = ['kanal', *{args!r}]; "
            "from kanal_worker.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_command_whose_extra_is_missing_says_which_to_install(tmp_path: Path) -> None:
    worker = tmp_path / "worker.properties"
    worker.write_text("group.id=kanal\n")
    result = kanal_without("kubernetes", "worker", "--config", str(worker))
    assert result.returncode == 1
    assert "pip install 'kanal[kubernetes]'" in result.stderr
    assert "Traceback" not in result.stderr
    result = kanal_without("kopf", "operator")
    assert result.returncode == 1 and "pip install 'kanal[operator]'" in result.stderr


def test_a_plugin_whose_extra_is_missing_says_which_to_install() -> None:
    code = ("import logging, sys; sys.modules['fastavro'] = None; logging.basicConfig()\n"
            "from kanal_worker.runtime.registry import find\n"
            "find('converter', 'io.confluent.connect.avro.AvroConverter', 'value.converter')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert "ConfigError" in result.stderr, result.stderr
    assert "AvroConverter of kanal.converters cannot be loaded: the Python package fastavro " \
           "is not installed; it comes with the extra avro: pip install 'kanal[avro]'" \
           in result.stderr
