"""Capped exponential backoff with jitter: one rule for every retry loop in vspd."""

from __future__ import annotations

import random

# 2**30 times any sensible initial delay is past every cap; beyond it the
# exponent would only risk a float overflow after days of retrying.
_MAX_DOUBLINGS = 30


def backoff_delay(initial_s: float, max_s: float, attempt: int, jitter: float = 0.2) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1), within ±jitter."""
    doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
    delay: float = min(initial_s * 2.0**doublings, max_s)
    return delay * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 - jitter, not security
