"""bench/go_profile.py, the decoder of Go's CPU profiles (an etcd member's, in bench_idle): on a
profile.proto built here field by field, gzipped as Go serves it, with packed and unpacked
repeated fields and an inlined frame; and on bytes that are not a profile.

The bench scripts are not a package, so the module is loaded from its file (it imports nothing
of the benchmarks' own)."""

from __future__ import annotations

import gzip

import pytest

from harness.bench_modules import load_bench_module

go_profile = load_bench_module("go_profile")


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def packed(number: int, values: list[int]) -> bytes:
    return field(number, b"".join(varint(v) for v in values))


STRINGS = [
    "",
    "samples",
    "count",
    "cpu",
    "nanoseconds",
    "runtime.futex",
    "go.etcd.io/etcd/raft.(*raft).tickHeartbeat",
    "go.etcd.io/etcd/etcdserver.(*raftNode).start.func1",
    "runtime.mcall",
]


def profile_bytes() -> bytes:
    """Functions 1-4 (names 5-8); location 10: futex; location 11: tickHeartbeat inlined into
    raftNode.start.func1 (two lines); location 12: mcall. Samples: futex <- mcall, 3 x 10 ms
    (packed); tickHeartbeat/start.func1, 1 x 10 ms (location ids unpacked)."""
    data = b""
    data += field(1, field(1, 1) + field(2, 2))  # sample_type: samples/count
    data += field(1, field(1, 3) + field(2, 4))  # sample_type: cpu/nanoseconds
    data += field(2, packed(1, [10, 12]) + packed(2, [3, 30_000_000]))
    data += field(2, field(1, 11) + packed(2, [1, 10_000_000]))
    data += field(4, field(1, 10) + field(4, field(1, 1)))
    data += field(4, field(1, 11) + field(4, field(1, 2)) + field(4, field(1, 3)))
    data += field(4, field(1, 12) + field(4, field(1, 4)))
    for function_id, name in ((1, 5), (2, 6), (3, 7), (4, 8)):
        data += field(5, field(1, function_id) + field(2, name))
    for text in STRINGS:
        data += field(6, text.encode())
    return gzip.compress(data)


def test_a_gzipped_cpu_profile_is_decoded_into_stacks_and_cpu_time() -> None:
    profile = go_profile.parse(profile_bytes())
    assert profile.samples == [
        (("runtime.futex", "runtime.mcall"), 30_000_000),
        (
            (
                "go.etcd.io/etcd/raft.(*raft).tickHeartbeat",
                "go.etcd.io/etcd/etcdserver.(*raftNode).start.func1",
            ),
            10_000_000,
        ),
    ]
    assert profile.total_ns == 40_000_000
    assert profile.own()["runtime.futex"] == 30_000_000
    assert profile.own()["runtime.mcall"] == 0  # never on top
    assert profile.cumulative()["runtime.mcall"] == 30_000_000
    assert profile.by_package() == {"runtime": 30_000_000, "go.etcd.io/etcd/raft": 10_000_000}
    text = go_profile.summary(profile, "leader")
    assert text.splitlines()[0] == "leader; 40 ms of CPU sampled, by Go package (own time):"
    assert "   75.0%  runtime" in text and "   25.0%  go.etcd.io/etcd/raft" in text


def test_bytes_that_are_not_a_profile_are_refused_with_a_reason() -> None:
    with pytest.raises(go_profile.ProfileError):
        go_profile.parse(b"")  # no sample types
    with pytest.raises(go_profile.ProfileError):
        go_profile.parse(b"\x0a\x05ab")  # a field longer than the bytes
    with pytest.raises(go_profile.ProfileError):
        go_profile.parse(b"\x0b")  # wire type 3 (groups) is not protobuf 3
    with pytest.raises(go_profile.ProfileError):
        go_profile.parse(b"\x0a\x80")  # the bytes end inside a length's varint
    empty = go_profile.parse(gzip.compress(field(1, field(1, 1)) + field(6, b"")))
    assert go_profile.summary(empty, "idle") == "idle: no CPU samples in the profile"


def test_package_names_keep_their_path() -> None:
    assert go_profile.package_of("runtime.futex") == "runtime"
    assert go_profile.package_of("net/http.(*conn).serve") == "net/http"
    assert go_profile.package_of("go.etcd.io/etcd/raft.(*raft).tick") == "go.etcd.io/etcd/raft"
