"""Process-wide memory settings (vspd/runtime/memory.py), in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys

# Eight threads allocate through libc at once (ctypes drops the GIL for each call),
# then glibc's malloc_stats() lists its arenas on stderr ("Arena N:").
CHURN = """
import ctypes, sys, threading
from vspd.runtime.memory import limit_malloc_arenas
print(limit_malloc_arenas() if sys.argv[1] == "limit" else None, flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def churn():
    for _ in range(20000):
        libc.free(libc.malloc(200))
threads = [threading.Thread(target=churn) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc.malloc_stats()
"""


def arenas(mode: str, **environ: str) -> tuple[str, int]:
    ran = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **environ},
    )
    return ran.stdout.strip(), sum(line.startswith("Arena ") for line in ran.stderr.splitlines())


def test_a_daemon_keeps_to_two_malloc_arenas_however_many_threads_allocate() -> None:
    said, limited = arenas("limit")
    assert said == "True"
    assert limited <= 2
    # Without the limit the same threads get arenas of their own (what it prevents).
    _, unlimited = arenas("none")
    assert unlimited > limited


def test_the_users_own_malloc_arena_max_wins() -> None:
    said, count = arenas("limit", MALLOC_ARENA_MAX="4")
    assert said == "False"
    assert count <= 4
