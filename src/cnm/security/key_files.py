"""Key material on disk: certificates and private keys written atomically with the right mode.

Without the `cryptography` library (security/__init__.py): a joining node writes what it was
given, and a node's store credentials are kept the same way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int, *, durable: bool = True) -> None:
    """Replace `path` with `data` so readers see the old file or the new one, never a mix.

    The temp file is created with its final mode by O_CREAT|O_EXCL, so a private key is never
    readable by others, not even between create and chmod; fchmod then undoes the umask.
    `durable=False` leaves the fsyncs to a later `make_durable` (what a machine crash would
    lose until then must not be relied on by anything written meanwhile).
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    # A rename is durable only once the directory entry is on disk.
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def make_durable(paths: Iterable[Path]) -> None:
    """fsync files written with `durable=False`, then each of their directories once."""
    directories: dict[Path, None] = {}
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        directories[path.parent] = None
    for directory in directories:
        _fsync_directory(directory)


def write_private(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Atomically write secret material (private keys) readable by the owner only (0600)."""
    write_atomic(path, data, 0o600, durable=durable)


def write_public(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Atomically write public material (certificates) readable by everyone (0644)."""
    write_atomic(path, data, 0o644, durable=durable)
