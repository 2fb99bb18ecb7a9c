"""Loopback addresses for test agents, unique across concurrent test processes.

Linux routes all of 127.0.0.0/8 to the loopback interface, so every agent gets its own address
and can use the product's default ports. An address is claimed with an exclusive lock file so
two pytest processes (or a benchmark beside the tests) never pick the same one, and checked by
binding its ports so a leftover process is noticed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

LOCK_DIR = Path("/tmp/cnm-test-addresses")
PORTS = (8080, 9443, 2379, 2380)
_held: dict[str, int] = {}


def _ports_free(addr: str) -> bool:
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((addr, port))
            except OSError:
                return False
    return True


def claim_address() -> str:
    """A 127.x.y.z address no other test process holds, with the agent ports free."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for second in range(100, 200):
        for third in range(0, 256):
            for fourth in range(2, 255, 1):
                addr = f"127.{second}.{third}.{fourth}"
                if addr in _held:
                    continue
                fd = os.open(LOCK_DIR / addr, os.O_CREAT | os.O_RDWR, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                if not _ports_free(addr):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    continue
                _held[addr] = fd
                return addr
    raise RuntimeError("no free loopback address for a test agent")


def release_address(addr: str) -> None:
    fd = _held.pop(addr, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
