"""How the agent's C allocator hands memory back: glibc's malloc, set once at start.

glibc serves a large allocation (128 KiB and more) with its own mmap and unmaps it on free,
but each such free also raises the threshold to the freed size (up to 32 MiB): the next
allocation that large comes from the heap instead, and a heap seldom shrinks. One argon2id run
(24 MiB, security/passwords.py and security/join_proof.py) is such an allocation, so the
second one left 24 MiB resident in the agent for good. Setting the threshold explicitly turns
the dynamic adjustment off: every large block is mapped and unmapped again. Each thread
(argon2 runs off the event loop) may also get an arena of its own that keeps what it freed;
two arenas are plenty for an agent with one event loop and a few worker threads.

The threshold is 1 MiB, not glibc's initial 128 KiB: asyncio reads every socket into a new
256 KiB bytes object (`sock.recv(256 KiB)`, then shrunk to what arrived). At 128 KiB each read
was an mmap, an mremap and an munmap, and two page faults: measured on GET /v1/bootstrap, 2.0
faults per request and 13 % of the agent's throughput (3500 against 4000 req/s on one core).
From the heap, the buffer's untouched pages cost nothing. For the heap to keep that room
instead of handing it back after each read (and faulting it in again on the next), its free
top is trimmed only above 2 MiB (`M_TRIM_THRESHOLD`, which a fixed mmap threshold would
otherwise leave at 128 KiB): at most 2 MiB of address space, resident only where written.

Only glibc has these settings; elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Above asyncio's 256 KiB socket read buffer, far below argon2id's 24 MiB (module docstring).
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 2 * 1024 * 1024
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Fix glibc's mmap and trim thresholds and arena count; True when glibc accepted all."""
    try:
        # The symbols already loaded into this process: libc's among them.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    accepted = all(
        mallopt(parameter, value)
        for parameter, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_ARENA_MAX, ARENA_MAX),
        )
    )
    if not accepted:
        log.debug("glibc refused the malloc settings; large blocks may stay resident")
    return accepted
