"""How the agent's C allocator hands memory back: glibc's malloc, set once at start.

glibc serves a large allocation (128 KiB and more) with its own mmap and unmaps it on free,
but each such free also raises the threshold to the freed size (up to 32 MiB): the next
allocation that large comes from the heap instead, and a heap seldom shrinks. One argon2id run
(24 MiB, security/passwords.py and security/join_proof.py) is such an allocation, so the
second one left 24 MiB resident in the agent for good. Setting the threshold explicitly turns
the dynamic adjustment off: every large block is mapped and unmapped again. Each thread
(argon2 runs off the event loop) may also get an arena of its own that keeps what it freed;
two arenas are plenty for an agent with one event loop and a few worker threads.

Only glibc has these settings; elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# glibc's initial threshold: what it uses until the first large free moves it.
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold and arena count; True when glibc accepted both."""
    try:
        # The symbols already loaded into this process: libc's among them.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    accepted = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_ARENA_MAX, ARENA_MAX)
    )
    if not accepted:
        log.debug("glibc refused the malloc settings; large blocks may stay resident")
    return accepted
