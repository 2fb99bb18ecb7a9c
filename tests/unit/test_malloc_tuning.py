"""The agent's allocator setting (node/malloc_tuning.py): argon2id's 24 MiB blocks go back to
the system after each run instead of staying resident for good, and reading a socket the way
asyncio does (into a new 256 KiB buffer) costs no page faults.

Each case runs in a fresh interpreter: the setting is process-wide and cannot be undone, and
the effect shows only in a process whose allocator has not been used for this before.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# Two argon2id runs in a worker thread (as the agent verifies passwords), RSS before and after.
_SCRIPT = """
import json, sys, threading, psutil
from cnm.node.malloc_tuning import tune_malloc
from cnm.security import join_proof
tuned = tune_malloc() if sys.argv[1] == "tuned" else False
process = psutil.Process()
def hash_once():
    join_proof.salted_password(
        "password", b"0123456789abcdef", time_cost=1, memory_cost=24576, parallelism=1
    )
def in_thread():
    thread = threading.Thread(target=hash_once)
    thread.start()
    thread.join()
in_thread()
before = process.memory_info().rss
for _ in range(3):
    in_thread()
    hash_once()
grown = process.memory_info().rss - before
print(json.dumps({"tuned": tuned, "grown_mib": grown / 2**20}))
"""

GLIBC = platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the malloc settings are glibc's (mallopt)")


def _measured(script: str, mode: str, name: str) -> float:
    """The figure `name` that `script` prints as JSON, run in a new interpreter with `mode`
    ("tuned": the agent's setting applied first, anything else: glibc's defaults)."""
    out = subprocess.run(
        [sys.executable, "-c", script, mode], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert result["tuned"] is (mode == "tuned"), result
    value = result[name]
    assert isinstance(value, float), result
    return value


@needs_glibc
def test_without_the_setting_a_second_argon2_run_stays_resident() -> None:
    # Why the setting exists: glibc's dynamic threshold keeps the 24 MiB after the second run.
    assert _measured(_SCRIPT, "default", "grown_mib") > 16


@needs_glibc
def test_with_the_setting_argon2_memory_goes_back() -> None:
    assert _measured(_SCRIPT, "tuned", "grown_mib") < 4


# Socket reads as asyncio's selector transport makes them: recv(256 KiB) of a small message.
_READS = """
import json, socket, sys
from cnm.node.malloc_tuning import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else False
def faults():
    with open("/proc/self/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[7])
left, right = socket.socketpair()
for _ in range(50):  # the heap settles
    left.send(b"GET / HTTP/1.1" * 10)
    right.recv(256 * 1024)
before = faults()
for _ in range(1000):
    left.send(b"GET / HTTP/1.1" * 10)
    right.recv(256 * 1024)
print(json.dumps({"tuned": tuned, "faults_per_read": (faults() - before) / 1000}))
"""


@needs_glibc
def test_socket_reads_fault_no_pages_in() -> None:
    # At glibc's 128 KiB threshold each read mapped 256 KiB and faulted two pages in.
    assert _measured(_READS, "tuned", "faults_per_read") < 0.1
