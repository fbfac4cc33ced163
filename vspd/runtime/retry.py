"""When to try again, and how long to wait: one rule for every retry loop in vspd.

``VspdError.retriable`` says it for vspd's own errors; ``RETRIABLE_GRPC_CODES``
says it for a gRPC status, on both sides of the processor call: the processor
maps its errors to codes (``vspd.processor.errors``) and the broker retries a
call whose code is in this set (``vspd.broker.processor_client``).
"""

from __future__ import annotations

import random

# 2**30 times any sensible initial delay is past every cap; beyond it the
# exponent would only risk a float overflow after days of retrying.
_MAX_DOUBLINGS = 30

# By name, so that what does not speak gRPC need not import it. A processor
# that is down, overloaded or was too slow this time may answer later.
RETRIABLE_GRPC_CODES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"}
)


def backoff_delay(initial_s: float, max_s: float, attempt: int, jitter: float = 0.2) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1), within ±jitter."""
    doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
    delay: float = min(initial_s * 2.0**doublings, max_s)
    return delay * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 - jitter, not security
