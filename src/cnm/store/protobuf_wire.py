"""The one piece of protobuf's wire format that cnm reads by hand in more than one place: a
base-128 varint (etcd's keep-alive answers in store/lease_stream.py; Go's CPU profiles in
bench/go_profile.py)."""

from __future__ import annotations


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint starting at `data[at]` and the offset after it; ValueError when the bytes end
    inside it or it runs past 64 bits."""
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("malformed protobuf varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
