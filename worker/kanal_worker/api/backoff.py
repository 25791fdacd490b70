"""How long to wait before retrying: Kanal's one backoff rule.

Every retry loop (task retries, the error handler, storage requests, the worker's start,
the operator's restarts and reconciles) waits ``exponential_backoff``: the first delay
doubling with each retry up to a cap. Once the doubled delay would pass the cap, a
random delay below the cap follows (Kafka Connect's rule for ``errors.retry.*``), so
many tasks failing together do not retry together; without jitter the cap itself, where
the delay must be predictable (a documented setting, a due time computed again on each
reconcile).
"""

from __future__ import annotations

import random

MAX_DOUBLINGS = 60
"""Beyond this the doubled delay passes any cap; it also keeps the power finite."""


def exponential_backoff(retry: int, first: float, cap: float, *, jitter: bool = True) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first): ``first`` times
    two to the power ``retry``, at most ``cap``; once past the cap, a random delay below
    it when ``jitter``."""
    if retry < 0 or first < 0 or cap < 0:
        raise ValueError(f"backoff needs a retry number, a first delay and a cap of at "
                         f"least 0; got {retry}, {first}, {cap}")
    delay: float = first * 2 ** min(retry, MAX_DOUBLINGS)
    if delay <= cap:
        return delay
    return random.uniform(0, cap) if jitter else cap
