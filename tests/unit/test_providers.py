"""Config providers: ${env:...}, ${file:...}, ${dir:...} and ${secret:...} (parsing)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import pytest

from kanal_worker.api.errors import ConfigError
from kanal_worker.config.kubernetes_secrets import (
    SecretConfigProvider,
    decode_value,
    parse_reference,
    pod_namespace,
)
from kanal_worker.config.providers import (
    PLACEHOLDER,
    dir_provider,
    env_provider,
    file_provider,
    providers_from_worker_config,
    resolve,
)


def test_placeholder_syntax_is_kafkas() -> None:
    match = PLACEHOLDER.fullmatch("${vault:secret/db:user:name}")
    assert match is not None and match.groups() == ("vault", "secret/db", "user:name")
    match = PLACEHOLDER.fullmatch("${env:HOME}")
    assert match is not None and match.groups() == ("env", None, "HOME")


def test_resolve_replaces_known_providers_and_keeps_others(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("KANAL_USER", "alice")
    monkeypatch.setenv("KANAL_HOST", "db")
    providers = {"env": env_provider({})}
    config = {"url": "jdbc://${env:KANAL_HOST}/x?user=${env:KANAL_USER}",
              "other": "${vault:path:key}", "plain": "x"}
    assert resolve(config, providers) == {"url": "jdbc://db/x?user=alice",
                                          "other": "${vault:path:key}", "plain": "x"}


def test_errors_name_the_config_key_never_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANAL_SECRET", "hunter2")
    providers = {"env": env_provider({"allowlist.pattern": "KANAL_PUBLIC_.*"})}
    with pytest.raises(ConfigError) as raised:
        resolve({"password": "${env:KANAL_SECRET}"}, providers)
    assert raised.value.key == "password"
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ConfigError, match="takes no path"):
        env_provider({})("dir", "HOME")
    with pytest.raises(ConfigError, match="KANAL_UNSET_VARIABLE is not set"):
        env_provider({})(None, "KANAL_UNSET_VARIABLE")


def test_file_provider_reads_properties_within_allowed_paths(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "creds.properties").write_text("user=alice\npassword=s3cr\\=t\n")
    (tmp_path / "outside.properties").write_text("user=mallory\n")
    (allowed / "escape.properties").symlink_to(tmp_path / "outside.properties")
    lookup = file_provider({"allowed.paths": str(allowed)})
    assert lookup(str(allowed / "creds.properties"), "password") == "s3cr=t"
    for path in (tmp_path / "outside.properties", allowed / ".." / "outside.properties",
                 allowed / "escape.properties"):
        with pytest.raises(ConfigError, match=r"not in allowed\.paths"):
            lookup(str(path), "user")
    with pytest.raises(ConfigError, match="key nope not found"):
        lookup(str(allowed / "creds.properties"), "nope")
    with pytest.raises(ConfigError, match="needs"):
        lookup(None, "user")


def test_dir_provider_reads_kubernetes_style_secret_mounts(tmp_path: Path) -> None:
    mount = tmp_path / "secret"
    data = mount / "..2024_05_01"
    data.mkdir(parents=True)
    (data / "password").write_text("s3cret\n")
    (mount / "..data").symlink_to(data.name)
    (mount / "password").symlink_to("..data/password")
    lookup = dir_provider({"allowed.paths": str(tmp_path)})
    assert lookup(str(mount), "password") == "s3cret\n"
    for key in ("../secret/password", "..", ""):
        with pytest.raises(ConfigError, match="directly inside"):
            lookup(str(mount), key)
    with pytest.raises(ConfigError, match="is not a file"):
        lookup(str(mount), "..data")
    with pytest.raises(ConfigError, match=r"not in allowed\.paths"):
        dir_provider({"allowed.paths": str(data)})(str(tmp_path), "other")


def test_worker_config_declares_providers(tmp_path: Path) -> None:
    providers = providers_from_worker_config({
        "config.providers": "file, env",
        "config.providers.file.class":
            "org.apache.kafka.common.config.provider.FileConfigProvider",
        "config.providers.file.param.allowed.paths": str(tmp_path),
        "config.providers.env.class": "EnvVarConfigProvider",
    })
    assert set(providers) == {"file", "env"}
    with pytest.raises(ConfigError) as raised:
        providers_from_worker_config({"config.providers": "x",
                                      "config.providers.x.class": "com.example.Vault"})
    assert raised.value.key == "config.providers.x.class"
    assert "dev.kanal.config.SecretConfigProvider" in raised.value.message
    with pytest.raises(ConfigError, match="without a class"):
        providers_from_worker_config({"config.providers": "x"})


def test_secret_provider_is_declared_by_class_name() -> None:
    for class_name in ("SecretConfigProvider", "dev.kanal.config.SecretConfigProvider"):
        providers = providers_from_worker_config({"config.providers": "secret",
                                                  "config.providers.secret.class": class_name})
        assert isinstance(providers["secret"], SecretConfigProvider)


@pytest.mark.parametrize(("path", "key", "message"), [
    (None, "password", "got a key \\(password\\) without a Secret name"),
    ("Azure_Credentials", "key", "not a valid Kubernetes Secret name"),
    ("azure-credentials", "account key", "not a valid key of a Kubernetes Secret"),
])
def test_secret_references_are_checked(path: str | None, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_reference(path, key)


def test_secret_values_are_decoded_and_missing_keys_listed_without_values() -> None:
    data = {"account-key": base64.b64encode(b"s3cret").decode(), "user": "YWxpY2U="}
    assert parse_reference("azure-credentials", "account-key") == ("azure-credentials",
                                                                   "account-key")
    assert decode_value("azure-credentials", "account-key", data) == "s3cret"
    with pytest.raises(ConfigError) as raised:
        decode_value("azure-credentials", "nope", data)
    assert "keys: account-key, user" in raised.value.message
    assert "s3cret" not in raised.value.message
    with pytest.raises(ConfigError, match="not base64"):
        decode_value("azure-credentials", "bad", {"bad": "%%%"})


def test_namespace_comes_from_param_then_downward_api_then_service_account(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    account = tmp_path / "namespace"
    account.write_text("from-service-account\n")
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert pod_namespace({}, account) == "from-service-account"
    monkeypatch.setenv("POD_NAMESPACE", "from-env")
    assert pod_namespace({}, account) == "from-env"
    assert pod_namespace({"namespace": "from-param"}, account) == "from-param"
    monkeypatch.delenv("POD_NAMESPACE")
    with pytest.raises(ConfigError, match="cannot tell its namespace"):
        pod_namespace({}, tmp_path / "absent")


def test_one_read_per_secret_while_resolving_a_configuration() -> None:
    reads: list[tuple[str, str]] = []

    def reader(namespace: str, name: str) -> Mapping[str, str]:
        reads.append((namespace, name))
        return {"user": "YWxpY2U=", "password": "czNjcmV0"}

    provider = SecretConfigProvider({"namespace": "telemetry"}, reader)
    config = {"user": "${secret:db:user}", "password": "${secret:db:password}"}
    assert resolve(config, {"secret": provider}) == {"user": "alice", "password": "s3cret"}
    assert reads == [("telemetry", "db")]
