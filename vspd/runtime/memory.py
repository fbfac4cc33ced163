"""Process-wide memory settings, applied before a daemon starts its threads."""

from __future__ import annotations

import ctypes
import os

# glibc's mallopt() parameter number for the arena limit (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
# glibc gives every thread that allocates while another holds the lock an arena of its own,
# up to 8 per core, and keeps what is freed inside it: gRPC's, librdkafka's and the worker
# threads each pinned megabytes that no other thread could reuse. Two arenas keep the lock
# uncontended enough for a daemon's few busy threads (its hot paths allocate little).
DAEMON_MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = DAEMON_MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas; False where there is nothing to cap (not glibc).

    The user's own MALLOC_ARENA_MAX wins (glibc read it at start-up).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, no per-thread arenas
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
