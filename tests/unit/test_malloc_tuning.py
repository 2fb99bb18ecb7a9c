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


def _grown(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@needs_glibc
def test_without_the_setting_a_second_argon2_run_stays_resident() -> None:
    # Why the setting exists: glibc's dynamic threshold keeps the 24 MiB after the second run.
    untuned = _grown("default")
    assert untuned["tuned"] is False
    assert isinstance(untuned["grown_mib"], float)
    assert untuned["grown_mib"] > 16


@needs_glibc
def test_with_the_setting_argon2_memory_goes_back() -> None:
    tuned = _grown("tuned")
    assert tuned["tuned"] is True
    assert isinstance(tuned["grown_mib"], float)
    assert tuned["grown_mib"] < 4


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


def _reads(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _READS, mode], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@needs_glibc
def test_socket_reads_fault_no_pages_in() -> None:
    # At glibc's 128 KiB threshold each read mapped 256 KiB and faulted two pages in.
    tuned = _reads("tuned")
    assert tuned["tuned"] is True
    assert isinstance(tuned["faults_per_read"], float)
    assert tuned["faults_per_read"] < 0.1
