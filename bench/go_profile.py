"""Where a Go process (an etcd member) spends its CPU: Go's own profiler, read without Go.

An etcd member started with `--enable-pprof` (the agent's environment `CNM_ETCD_PPROF=1`,
store/etcd_process.py) answers GET /debug/pprof/profile?seconds=N on its client port with a CPU
profile: Go's runtime samples the process every 10 ms of CPU time it uses, and the answer is
pprof's `profile.proto`, gzipped. There is no Go toolchain here (`go tool pprof`), so this module
decodes the few fields a summary needs (the protobuf wire format is small): the samples (their
stack as location ids, their values), the locations (their lines' function ids, inlined frames
first), the functions (their names, as indexes into the string table) and the sample types (to
pick CPU nanoseconds). py-spy cannot see into Go; this is the same kind of answer for etcd.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from cnm.store.protobuf_wire import read_varint

# profile.proto's field numbers.
PROFILE_SAMPLE_TYPE, PROFILE_SAMPLE, PROFILE_LOCATION, PROFILE_FUNCTION = 1, 2, 4, 5
PROFILE_STRING_TABLE = 6
VALUE_TYPE_TYPE = 1
SAMPLE_LOCATION_ID, SAMPLE_VALUE = 1, 2
LOCATION_ID, LOCATION_LINE = 1, 4
LINE_FUNCTION_ID = 1
FUNCTION_ID, FUNCTION_NAME = 1, 2

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class ProfileError(ValueError):
    """The bytes are not a profile this module can read."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    try:
        return read_varint(data, at)
    except ValueError as exc:
        raise ProfileError(str(exc)) from None


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of one message: an int for varints and fixed-size
    fields, the bytes for length-delimited ones."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, at = _varint(data, at)
            yield number, wire, value
        elif wire == LENGTH:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise ProfileError("truncated field")
            yield number, wire, data[at : at + size]
            at += size
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            yield number, wire, int.from_bytes(data[at : at + width], "little")
            at += width
        else:
            raise ProfileError(f"unsupported wire type {wire}")


def _ints(wire: int, value: int | bytes) -> list[int]:
    """A repeated integer field's values: packed (one length-delimited run) or not."""
    if isinstance(value, int):
        return [value]
    out, at = [], 0
    while at < len(value):
        number, at = _varint(value, at)
        out.append(number)
    return out


def _message(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProfileError("expected a message")
    return value


@dataclass(frozen=True)
class CpuProfile:
    """Each sample's stack (function names, the innermost first) and its CPU nanoseconds."""

    samples: list[tuple[tuple[str, ...], int]]

    @property
    def total_ns(self) -> int:
        return sum(ns for _, ns in self.samples)

    def own(self) -> Counter[str]:
        """CPU ns by the function on top of the stack."""
        counted: Counter[str] = Counter()
        for stack, ns in self.samples:
            counted[stack[0] if stack else "?"] += ns
        return counted

    def cumulative(self) -> Counter[str]:
        """CPU ns by every function on the stack (each counted once per sample)."""
        counted: Counter[str] = Counter()
        for stack, ns in self.samples:
            for name in set(stack):
                counted[name] += ns
        return counted

    def by_package(self) -> Counter[str]:
        """Own CPU ns by the Go package of the function on top of the stack."""
        counted: Counter[str] = Counter()
        for name, ns in self.own().items():
            counted[package_of(name)] += ns
        return counted


def package_of(function: str) -> str:
    """`go.etcd.io/etcd/raft.(*raft).tick` -> `go.etcd.io/etcd/raft`; `runtime.futex` ->
    `runtime`."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function[:dot] if dot > 0 else function


def parse(raw: bytes) -> CpuProfile:
    """The CPU samples of a (possibly gzipped) profile.proto."""
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    strings: list[str] = []
    sample_types: list[int] = []  # string index of each value's type
    raw_samples: list[tuple[list[int], list[int]]] = []
    locations: dict[int, list[int]] = {}  # location id -> function ids, innermost first
    functions: dict[int, int] = {}  # function id -> name's string index
    for number, _, value in fields(data):
        if number == PROFILE_STRING_TABLE:
            strings.append(_message(value).decode("utf-8", "replace"))
        elif number == PROFILE_SAMPLE_TYPE:
            for inner, _, kind in fields(_message(value)):
                if inner == VALUE_TYPE_TYPE and isinstance(kind, int):
                    sample_types.append(kind)
        elif number == PROFILE_SAMPLE:
            stack: list[int] = []
            values: list[int] = []
            for inner, inner_wire, item in fields(_message(value)):
                if inner == SAMPLE_LOCATION_ID:
                    stack += _ints(inner_wire, item)
                elif inner == SAMPLE_VALUE:
                    values += _ints(inner_wire, item)
            raw_samples.append((stack, values))
        elif number == PROFILE_LOCATION:
            location_id, lines = 0, []
            for inner, _, item in fields(_message(value)):
                if inner == LOCATION_ID and isinstance(item, int):
                    location_id = item
                elif inner == LOCATION_LINE:
                    lines += [f for n, _, f in fields(_message(item)) if n == LINE_FUNCTION_ID]
            locations[location_id] = [f for f in lines if isinstance(f, int)]
        elif number == PROFILE_FUNCTION:
            function_id = name = 0
            for inner, _, item in fields(_message(value)):
                if inner == FUNCTION_ID and isinstance(item, int):
                    function_id = item
                elif inner == FUNCTION_NAME and isinstance(item, int):
                    name = item
            functions[function_id] = name
    if not sample_types:
        raise ProfileError("no sample types: not a profile")
    names = [strings[i] if 0 <= i < len(strings) else "?" for i in sample_types]
    # A CPU profile's values are (samples, cpu nanoseconds); take the nanoseconds.
    column = names.index("cpu") if "cpu" in names else len(names) - 1

    def name_of(function_id: int) -> str:
        index = functions.get(function_id, -1)
        return strings[index] if 0 <= index < len(strings) else "?"

    samples = []
    for stack, values in raw_samples:
        if column >= len(values):
            continue
        frames = tuple(name_of(f) for location in stack for f in locations.get(location, []))
        samples.append((frames, values[column]))
    return CpuProfile(samples)


def summary(profile: CpuProfile, title: str, *, top: int = 12) -> str:
    """A text summary: CPU by package and by function (own, then cumulative), as % of the
    profile's CPU time."""
    total = profile.total_ns
    if not total:
        return f"{title}: no CPU samples in the profile"
    lines = [f"{title}; {total / 1e6:.0f} ms of CPU sampled, by Go package (own time):"]

    def rows(counted: Counter[str]) -> list[str]:
        return [f"  {100 * ns / total:5.1f}%  {name}" for name, ns in counted.most_common(top)]

    lines += rows(profile.by_package())
    lines.append("by function, own time (on top of the stack):")
    lines += rows(profile.own())
    lines.append("by function, cumulative (anywhere on the stack):")
    lines += rows(profile.cumulative())
    return "\n".join(lines)
