"""The one backoff rule: doubling up to a cap, then jitter below the cap or the cap."""

from __future__ import annotations

import pytest

from kanal_worker.api.backoff import exponential_backoff


def test_delays_double_from_the_first_until_the_cap() -> None:
    assert [exponential_backoff(n, 0.3, 10.0) for n in range(6)] == \
        [0.3, 0.6, 1.2, 2.4, 4.8, 9.6]
    assert exponential_backoff(0, 5.0, 300.0, jitter=False) == 5.0


def test_past_the_cap_the_delay_is_the_cap_without_jitter() -> None:
    assert [exponential_backoff(n, 4.0, 120.0, jitter=False) for n in (5, 6, 50, 10**6)] == \
        [120.0, 120.0, 120.0, 120.0]


def test_past_the_cap_jitter_spreads_delays_below_the_cap() -> None:
    delays = [exponential_backoff(7, 0.3, 10.0) for _ in range(200)]
    assert all(0 <= delay <= 10.0 for delay in delays)
    assert len(set(delays)) > 100  # spread out, not one value
    assert min(delays) < 5.0 < max(delays)


def test_huge_retry_numbers_stay_finite() -> None:
    assert exponential_backoff(10**9, 1.0, 60.0, jitter=False) == 60.0


def test_a_zero_first_delay_never_waits() -> None:
    assert exponential_backoff(30, 0.0, 10.0) == 0.0


@pytest.mark.parametrize(("retry", "first", "cap"), [(-1, 1.0, 2.0), (0, -1.0, 2.0),
                                                     (0, 1.0, -2.0)])
def test_negative_inputs_are_refused_by_name(retry: int, first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="retry number, a first delay and a cap"):
        exponential_backoff(retry, first, cap)
