from kanal_worker.connectors.telemetry import reading


def test_same_seed_same_readings_and_sequence_is_stable() -> None:
    first = [reading(7, i, 50, 1_700_000_000_000, 1000) for i in range(200)]
    again = [reading(7, i, 50, 1_700_000_000_000, 1000) for i in range(200)]
    other = [reading(8, i, 50, 1_700_000_000_000, 1000) for i in range(200)]
    assert first == again
    assert first != other
    assert [r["seq"] for r in first] == list(range(200))
    assert first[3]["timestamp"] - first[2]["timestamp"] == 1000


def test_readings_are_plausible() -> None:
    readings = [reading(1, i, 10, 0, 1) for i in range(2000)]
    assert {r["vehicle_id"] for r in readings} == {f"VH-{v:04d}" for v in range(10)}
    assert all(20 <= r["speed_kmh"] < 140 for r in readings)
    assert all(5 <= r["fuel_level"] <= 100 for r in readings)
    assert any(r["speed_kmh"] > 120 for r in readings)
