"""The cluster's `http_support` kept for the next start (daemon.py): written without waiting for
the disk, because it is written before a create or join reports `completed`, and what a machine
crash can leave of it (nothing, or an empty file) reads as HTTP's default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnm.daemon import remember_http_support, remembered_http_support
from cnm.node.data_dir import DataDir


def test_the_value_is_kept_and_read_back(tmp_path: Path) -> None:
    remember_http_support(tmp_path, False)
    assert remembered_http_support(tmp_path) is False
    remember_http_support(tmp_path, True)
    assert remembered_http_support(tmp_path) is True


def test_it_is_written_without_an_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    remember_http_support(tmp_path, False)
    assert DataDir(tmp_path).http_support_file.read_bytes() == b"false"
    assert synced == []
    assert oct(DataDir(tmp_path).http_support_file.stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize("left", [None, b"", b"\x00\x00\x00\x00\x00"])
def test_what_a_machine_crash_leaves_reads_as_http_open(tmp_path: Path, left: bytes | None) -> None:
    path = DataDir(tmp_path).http_support_file
    if left is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(left)
    assert remembered_http_support(tmp_path) is True
