"""When the native fetch cannot be used, ``fetcher`` says so once and returns None."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from kanal_worker import native


def test_the_extension_is_built_and_finds_librdkafka() -> None:
    Consumer({"group.id": "unused"}).close()
    path = native.librdkafka_path()
    assert path is not None and "librdkafka" in path
    from kanal_worker.native import _fetch  # type: ignore[attr-defined]

    assert _fetch.Fetcher.__name__ == "Fetcher"


def test_turned_off_it_falls_back(monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(native, "ENABLED", False)
    monkeypatch.setattr(native, "_refused", set())
    consumer = Consumer({"group.id": "unused"})
    try:
        assert native.fetcher(consumer) is None
        assert native.fetcher(consumer) is None
    finally:
        consumer.close()
    assert caplog.text.count("KANAL_NATIVE_FETCH=0") == 1


def test_a_client_of_another_layout_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    Consumer({"group.id": "unused"}).close()  # loads librdkafka
    assert native.fetcher(object()) is None
    assert "object is not a confluent_kafka Consumer" in caplog.text
