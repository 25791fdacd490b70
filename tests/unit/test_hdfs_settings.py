"""Which WebHDFS address an ``hdfs.url`` means, and as which user files are written."""

from __future__ import annotations

import pytest

from kanal_worker.connectors.hdfs.settings import HdfsSinkSettings


def settings(**values: str) -> HdfsSinkSettings:
    return HdfsSinkSettings.parse({"topics": "t", **values})


@pytest.mark.parametrize(("url", "extra", "webhdfs"), [
    ("hdfs://namenode:8020", {}, "http://namenode:9870/webhdfs/v1"),
    ("hdfs://namenode:8020", {"kanal.webhdfs.port": "50070"}, "http://namenode:50070/webhdfs/v1"),
    ("http://10.0.0.5:19870", {}, "http://10.0.0.5:19870/webhdfs/v1"),
    ("webhdfs://nn", {}, "http://nn:9870/webhdfs/v1"),
    ("swebhdfs://nn", {}, "https://nn:9871/webhdfs/v1"),
    ("https://nn:443/ignored/path", {}, "https://nn:443/webhdfs/v1"),
])
def test_hdfs_url_names_the_webhdfs_endpoint(url: str, extra: dict[str, str],
                                              webhdfs: str) -> None:
    assert str(settings(**{"hdfs.url": url}, **extra).webhdfs) == webhdfs


def test_user_comes_from_the_setting_then_hadoop_user_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HADOOP_USER_NAME", "etl")
    assert settings(**{"hdfs.url": "hdfs://nn"}).user == "etl"
    assert settings(**{"hdfs.url": "hdfs://nn", "kanal.hdfs.user": "kafka"}).user == "kafka"


def test_avro_is_the_default_format_as_in_confluents_connector() -> None:
    assert settings(**{"hdfs.url": "hdfs://nn"}).format_class == "AvroFormat"
