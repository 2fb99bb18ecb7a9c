"""The `Store` contract, one suite run against both backends: `MemoryStore` and a real etcd.

The in-memory store exists so that logic tests can trust it to behave as etcd does; this suite is
where that trust is earned. Every test runs twice (`[memory]`, `[etcd]`) on a key prefix of its
own. The etcd is one real member (mutual TLS, certificates from `cnm.security.pki`) started once
for the module on a loopback address of its own. Time-dependent behaviour runs on an injected
clock for the memory store; on etcd, lease expiry is polled with a deadline (etcd's minimum TTL
applies, so it takes a couple of seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio

from cnm.errors import LeaseNotFound, StoreError, StoreUnavailable
from cnm.security import key_files, pki
from cnm.store.base import (
    Compare,
    CompareTarget,
    Delete,
    EventType,
    Get,
    KeyValue,
    MembershipChangeRefused,
    MembershipRefusal,
    Put,
    Store,
    WatchEvent,
    prefix_end,
)
from cnm.store.etcd import EtcdStore
from cnm.store.etcd_process import EtcdMemberSpec, EtcdProcess
from cnm.store.etcd_wire import client_tls_context, membership_refusal
from cnm.store.memory import MemoryStore
from harness.addresses import claim_address, release_address
from harness.secured_etcd import one_member_spec

T = TypeVar("T")

# Long enough for etcd never to expire a lease during a test that does not wait for it.
LONG_TTL = 60
# etcd raises short TTLs to its minimum (1.5 x election timeout, rounded up: 2 s here).
SHORT_TTL = 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class EtcdServer:
    spec: EtcdMemberSpec
    tls: ssl.SSLContext

    @property
    def url(self) -> str:
        return self.spec.client_url

    def client(self, *, timeout: float = 5.0) -> EtcdStore:
        return EtcdStore([self.url], tls=self.tls, timeout=timeout)


@dataclass
class Backend:
    name: str
    store: Store
    prefix: str
    clock: FakeClock | None = None

    def key(self, name: str) -> str:
        return self.prefix + name


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EtcdServer]:
    binary = shutil.which("etcd")
    assert binary is not None
    addr = claim_address()
    base = tmp_path_factory.mktemp("etcd-contract")
    ca = pki.make_ca("store-contract")
    node = pki.issue_cert(ca, "etcd store contract", [addr])
    ca_file, cert_file, key_file = base / "ca.pem", base / "node.pem", base / "node.key"
    key_files.write_public(ca_file, ca.cert_pem)
    key_files.write_public(cert_file, node.cert_pem)
    key_files.write_private(key_file, node.key_pem)
    spec = one_member_spec("contract", base, addr, ca_file, (cert_file, key_file))
    tls = client_tls_context(str(ca_file), str(cert_file), str(key_file))
    etcd = EtcdProcess(binary, spec)
    try:
        await etcd.start()
        probe = EtcdStore([spec.client_url], tls=tls)
        try:
            await etcd.wait_ready(probe)
        finally:
            await probe.close()
        yield EtcdServer(spec, tls)
    finally:
        await etcd.stop()
        release_address(addr)


@pytest.fixture(params=["memory", "etcd"])
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "etcd":
        # Started on first use only, so `-k memory` runs without etcd.
        request.getfixturevalue("etcd_server")
    return name


@pytest.fixture
async def backend(request: pytest.FixtureRequest, backend_name: str) -> AsyncIterator[Backend]:
    prefix = f"/contract/{uuid.uuid4().hex}/"
    if backend_name == "memory":
        clock = FakeClock()
        memory = MemoryStore(clock=clock)
        yield Backend("memory", memory, prefix, clock)
        await memory.close()
        return
    server: EtcdServer = request.getfixturevalue("etcd_server")
    etcd = server.client()
    try:
        yield Backend("etcd", etcd, prefix)
    finally:
        with contextlib.suppress(StoreError):
            await etcd.delete(prefix, prefix=True)
        await etcd.close()


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, message: str = ""
) -> T:
    """Await `check` until it returns something truthy or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{message or 'condition'} not reached within {timeout} s")
        await asyncio.sleep(0.05)


async def current_revision(backend: Backend) -> int:
    _, revision = await backend.store.get_prefix(backend.key(""))
    return revision


async def collect(stream: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    async with asyncio.timeout(10):
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
    return events


def described(events: list[WatchEvent]) -> list[tuple[str, str, bytes | None]]:
    """(type, key, value of a PUT) of each event: what both backends must agree on."""
    return [
        (e.type.value, e.kv.key, e.kv.value if e.type is EventType.PUT else None) for e in events
    ]


# --- plain reads and writes ---------------------------------------------------------------------


async def test_get_missing_key_is_none(backend: Backend) -> None:
    assert await backend.store.get(backend.key("nothing")) is None


async def test_put_then_get(backend: Backend) -> None:
    store, key = backend.store, backend.key("a")
    revision = await store.put(key, b"value-1")
    kv = await store.get(key)
    assert kv == KeyValue(key, b"value-1", revision, revision, 1, 0)


async def test_put_again_updates_mod_revision_and_version(backend: Backend) -> None:
    store, key = backend.store, backend.key("a")
    first = await store.put(key, b"1")
    second = await store.put(key, b"2")
    assert second == first + 1
    kv = await store.get(key)
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", first, second, 2)


async def test_binary_values_and_unicode_keys_round_trip(backend: Backend) -> None:
    store = backend.store
    key = backend.key("naïve/ключ/🔑")
    value = bytes(range(256))
    await store.put(key, value)
    kv = await store.get(key)
    assert kv is not None and kv.key == key and kv.value == value
    assert [kv.key for kv in (await store.get_prefix(backend.key("naïve/")))[0]] == [key]


async def test_empty_value(backend: Backend) -> None:
    await backend.store.put(backend.key("e"), b"")
    kv = await backend.store.get(backend.key("e"))
    assert kv is not None and kv.value == b"" and kv.version == 1


async def test_delete_returns_count_and_recreate_starts_over(backend: Backend) -> None:
    store, key = backend.store, backend.key("a")
    assert await store.delete(key) == 0
    created = await store.put(key, b"1")
    await store.put(key, b"2")
    assert await store.delete(key) == 1
    assert await store.get(key) is None
    recreated = await store.put(key, b"3")
    kv = await store.get(key)
    assert kv is not None
    assert kv.version == 1
    assert kv.create_revision == recreated > created


async def test_delete_prefix(backend: Backend) -> None:
    store = backend.store
    for name in ("dir/a", "dir/b", "dir/sub/c", "dir2", "other"):
        await store.put(backend.key(name), name.encode())
    assert await store.delete(backend.key("dir/"), prefix=True) == 3
    remaining, _ = await store.get_prefix(backend.key(""))
    assert [kv.key for kv in remaining] == [backend.key("dir2"), backend.key("other")]
    assert await store.delete(backend.key("dir/"), prefix=True) == 0


async def test_delete_without_prefix_is_exact(backend: Backend) -> None:
    store = backend.store
    await store.put(backend.key("k"), b"1")
    await store.put(backend.key("k2"), b"2")
    assert await store.delete(backend.key("k")) == 1
    assert await store.get(backend.key("k2")) is not None


async def test_get_prefix_sorted_with_revision(backend: Backend) -> None:
    store = backend.store
    # Written out of order; keys right outside the prefix must not appear.
    for name in ("p/b", "p/a", "p/c/d", "p0", "o"):
        last = await store.put(backend.key(name), name.encode())
    items, revision = await store.get_prefix(backend.key("p/"))
    assert [kv.key for kv in items] == [backend.key(n) for n in ("p/a", "p/b", "p/c/d")]
    assert [kv.value for kv in items] == [b"p/a", b"p/b", b"p/c/d"]
    assert revision == last  # the store's revision at the read, here the last write


async def test_get_prefix_empty_still_has_revision(backend: Backend) -> None:
    written = await backend.store.put(backend.key("x"), b"1")
    items, revision = await backend.store.get_prefix(backend.key("nothing/"))
    assert items == []
    assert revision == written


def test_prefix_end() -> None:
    assert prefix_end("/a/") == "/a0"
    assert prefix_end("a") == "b"
    assert prefix_end("") == "\0"


# --- transactions -------------------------------------------------------------------------------


async def test_txn_success_branch(backend: Backend) -> None:
    store = backend.store
    a, b = backend.key("a"), backend.key("b")
    result = await store.txn(
        [Compare.absent(a)],
        [Put(a, b"1"), Put(b, b"2"), Get(a)],
        [Put(a, b"lost")],
    )
    assert result.succeeded is True
    assert len(result.reads) == 1
    assert [(kv.key, kv.value) for kv in result.reads[0]] == [(a, b"1")]
    kv_a, kv_b = await store.get(a), await store.get(b)
    assert kv_a is not None and kv_b is not None
    # Every write of one transaction carries the same revision: the transaction's.
    assert kv_a.mod_revision == kv_b.mod_revision == result.revision


async def test_txn_failure_branch_runs_instead(backend: Backend) -> None:
    store = backend.store
    a, flag = backend.key("a"), backend.key("flag")
    await store.put(a, b"existing")
    result = await store.txn(
        [Compare.absent(a)],
        [Put(a, b"won")],
        [Put(flag, b"lost"), Get(a), Get(backend.key(""), prefix=True)],
    )
    assert result.succeeded is False
    assert [kv.value for kv in result.reads[0]] == [b"existing"]
    assert [kv.key for kv in result.reads[1]] == [a, flag]
    kv = await store.get(a)
    assert kv is not None and kv.value == b"existing"
    flag_kv = await store.get(flag)
    assert flag_kv is not None and flag_kv.mod_revision == result.revision


async def test_txn_without_failure_ops_changes_nothing(backend: Backend) -> None:
    store, a = backend.store, backend.key("a")
    written = await store.put(a, b"1")
    result = await store.txn([Compare.value_is(a, b"other")], [Delete(a)])
    assert result.succeeded is False
    assert result.reads == []
    assert result.revision == written
    assert await store.get(a) is not None


async def test_txn_reads_only_do_not_advance_revision(backend: Backend) -> None:
    store, a = backend.store, backend.key("a")
    written = await store.put(a, b"1")
    result = await store.txn([], [Get(a), Get(backend.key("missing"))])
    assert result.succeeded is True
    assert result.revision == written
    assert [[kv.value for kv in read] for read in result.reads] == [[b"1"], []]


async def test_txn_delete_prefix_and_guard_on_many_keys(backend: Backend) -> None:
    store = backend.store
    one, two = backend.key("d/1"), backend.key("d/2")
    await store.put(one, b"1")
    await store.put(two, b"2")
    result = await store.txn(
        [Compare.exists(one), Compare.exists(two)], [Delete(backend.key("d/"), prefix=True)]
    )
    assert result.succeeded
    assert (await store.get_prefix(backend.key("d/")))[0] == []


async def test_txn_that_deletes_nothing_does_not_advance_revision(backend: Backend) -> None:
    store = backend.store
    written = await store.put(backend.key("a"), b"1")
    result = await store.txn([], [Delete(backend.key("missing"))])
    assert result.succeeded
    assert result.revision == written


async def test_txn_is_all_or_nothing_when_an_op_is_refused(backend: Backend) -> None:
    store = backend.store
    first, second = backend.key("first"), backend.key("second")
    before = await store.put(backend.key("marker"), b"m")
    with pytest.raises(StoreError) as caught:
        await store.txn([], [Put(first, b"1"), Put(second, b"2", lease=987654321)])
    assert not isinstance(caught.value, StoreUnavailable)
    assert await store.get(first) is None
    assert await current_revision(backend) == before


# --- compare variants ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda k, rev: Compare.absent(k), False),
        (lambda k, rev: Compare.exists(k), True),
        (lambda k, rev: Compare(k, CompareTarget.VERSION, "=", 2), True),
        (lambda k, rev: Compare(k, CompareTarget.VERSION, "!=", 2), False),
        (lambda k, rev: Compare(k, CompareTarget.VERSION, ">", 1), True),
        (lambda k, rev: Compare(k, CompareTarget.VERSION, "<", 2), False),
        (lambda k, rev: Compare(k, CompareTarget.CREATE, "=", rev["create"]), True),
        (lambda k, rev: Compare(k, CompareTarget.CREATE, "<", rev["create"]), False),
        (lambda k, rev: Compare(k, CompareTarget.CREATE, "<", rev["mod"]), True),
        (lambda k, rev: Compare.mod(k, "=", rev["mod"]), True),
        (lambda k, rev: Compare.mod(k, "=", rev["create"]), False),
        (lambda k, rev: Compare.mod(k, ">", rev["create"]), True),
        (lambda k, rev: Compare.mod(k, "<", rev["mod"] + 1), True),
        (lambda k, rev: Compare.mod(k, "!=", rev["mod"]), False),
        (lambda k, rev: Compare.value_is(k, b"second"), True),
        (lambda k, rev: Compare.value_is(k, b"first"), False),
        (lambda k, rev: Compare(k, CompareTarget.VALUE, "!=", b"first"), True),
        (lambda k, rev: Compare(k, CompareTarget.VALUE, "!=", b"second"), False),
    ],
    ids=[
        "absent",
        "exists",
        "version=",
        "version!=",
        "version>",
        "version<",
        "create=",
        "create<create",
        "create<mod",
        "mod=",
        "mod=create",
        "mod>",
        "mod<",
        "mod!=",
        "value=",
        "value=old",
        "value!=old",
        "value!=",
    ],
)
async def test_compare_on_existing_key(
    backend: Backend, make: Callable[[str, dict[str, int]], Compare], expected: bool
) -> None:
    store, key = backend.store, backend.key("k")
    created = await store.put(key, b"first")
    modified = await store.put(key, b"second")
    compare = make(key, {"create": created, "mod": modified})
    result = await store.txn([compare], [Get(key)], [])
    assert result.succeeded is expected
    # Combined with a compare that always holds, the outcome is the same (compares are ANDed).
    both = await store.txn([Compare.exists(key), compare], [], [])
    assert both.succeeded is expected


async def test_compare_on_missing_key(backend: Backend) -> None:
    store, key = backend.store, backend.key("missing")
    assert (await store.txn([Compare.absent(key)], [])).succeeded
    assert not (await store.txn([Compare.exists(key)], [])).succeeded
    assert (await store.txn([Compare(key, CompareTarget.CREATE, "=", 0)], [])).succeeded
    assert (await store.txn([Compare.mod(key, "=", 0)], [])).succeeded
    # A value compare on a key that does not exist never holds, whatever the operator.
    assert not (await store.txn([Compare.value_is(key, b"")], [])).succeeded
    assert not (await store.txn([Compare(key, CompareTarget.VALUE, "!=", b"x")], [])).succeeded


async def test_all_compares_must_hold(backend: Backend) -> None:
    store = backend.store
    a, b = backend.key("a"), backend.key("b")
    await store.put(a, b"1")
    result = await store.txn([Compare.exists(a), Compare.exists(b)], [Put(a, b"changed")])
    assert not result.succeeded
    kv = await store.get(a)
    assert kv is not None and kv.value == b"1"


async def test_compare_and_swap_on_mod_revision(backend: Backend) -> None:
    store, key = backend.store, backend.key("counter")
    await store.put(key, b"1")
    kv = await store.get(key)
    assert kv is not None
    won = await store.txn([Compare.mod(key, "=", kv.mod_revision)], [Put(key, b"2")])
    lost = await store.txn([Compare.mod(key, "=", kv.mod_revision)], [Put(key, b"3")])
    assert (won.succeeded, lost.succeeded) == (True, False)
    final = await store.get(key)
    assert final is not None and final.value == b"2"


# --- create (compare-and-set) -------------------------------------------------------------------


async def test_create_only_once(backend: Backend) -> None:
    store, key = backend.store, backend.key("unique")
    assert await store.create(key, b"first") is True
    assert await store.create(key, b"second") is False
    kv = await store.get(key)
    assert kv is not None and kv.value == b"first" and kv.version == 1


async def test_create_after_delete(backend: Backend) -> None:
    store, key = backend.store, backend.key("unique")
    assert await store.create(key, b"1")
    await store.delete(key)
    assert await store.create(key, b"2")


async def test_concurrent_creates_have_one_winner(backend: Backend) -> None:
    store, key = backend.store, backend.key("race")
    results = await asyncio.gather(*(store.create(key, str(i).encode()) for i in range(8)))
    assert results.count(True) == 1
    kv = await store.get(key)
    assert kv is not None and kv.value == str(results.index(True)).encode()


# --- leases -------------------------------------------------------------------------------------


async def test_lease_grant_put_and_revoke(backend: Backend) -> None:
    store = backend.store
    lease = await store.lease_grant(LONG_TTL)
    assert lease > 0
    other = await store.lease_grant(LONG_TTL)
    assert other != lease
    a, b, keep = backend.key("a"), backend.key("b"), backend.key("keep")
    await store.put(a, b"1", lease=lease)
    await store.txn([], [Put(b, b"2", lease=lease), Put(keep, b"3")])
    kv = await store.get(a)
    assert kv is not None and kv.lease == lease
    await store.lease_revoke(lease)
    assert await store.get(a) is None
    assert await store.get(b) is None
    assert await store.get(keep) is not None
    await store.lease_revoke(other)


async def test_revoking_twice_is_not_an_error(backend: Backend) -> None:
    store = backend.store
    lease = await store.lease_grant(LONG_TTL)
    await store.lease_revoke(lease)
    await store.lease_revoke(lease)
    await store.lease_revoke(123456789)  # never granted


async def test_keepalive_returns_ttl_and_zero_once_gone(backend: Backend) -> None:
    store = backend.store
    lease = await store.lease_grant(LONG_TTL)
    assert await store.lease_keepalive(lease) == LONG_TTL
    await store.lease_revoke(lease)
    assert await store.lease_keepalive(lease) == 0


async def test_renew_answers_with_the_store_revision(backend: Backend) -> None:
    # The liveness loop feeds the snapshot's freshness from this revision (cluster/runtime.py).
    store = backend.store
    lease = await store.lease_grant(LONG_TTL)
    written = await store.put(backend.key("renew"), b"v")
    renewal = await store.lease_renew(lease)
    assert renewal.ttl == LONG_TTL
    assert renewal.revision >= written
    await store.lease_revoke(lease)
    assert (await store.lease_renew(lease)).ttl == 0


async def test_put_with_unknown_lease_is_lease_not_found(backend: Backend) -> None:
    store, key = backend.store, backend.key("a")
    with pytest.raises(LeaseNotFound) as caught:
        await store.put(key, b"1", lease=987654321)
    assert not isinstance(caught.value, StoreUnavailable)
    assert "lease" in caught.value.message
    assert await store.get(key) is None


async def test_a_transaction_on_a_revoked_lease_is_lease_not_found(backend: Backend) -> None:
    # What a joiner meets when the lease granted at its admission expired (cluster/liveness.py).
    store, key = backend.store, backend.key("a")
    lease = await store.lease_grant(LONG_TTL)
    await store.lease_revoke(lease)
    with pytest.raises(LeaseNotFound):
        await store.txn([], [Put(key, b"1", lease=lease)], [])
    assert await store.get(key) is None


async def test_put_without_lease_detaches_key(backend: Backend) -> None:
    store, key = backend.store, backend.key("a")
    lease = await store.lease_grant(LONG_TTL)
    await store.put(key, b"1", lease=lease)
    await store.put(key, b"2")
    await store.lease_revoke(lease)
    kv = await store.get(key)
    assert kv is not None and kv.value == b"2" and kv.lease == 0


async def test_lease_expiry_deletes_its_keys(backend: Backend) -> None:
    store = backend.store
    lease = await store.lease_grant(SHORT_TTL)
    key, other = backend.key("ephemeral"), backend.key("durable")
    await store.put(key, b"1", lease=lease)
    await store.put(other, b"2")
    if backend.clock is not None:
        backend.clock.now += SHORT_TTL - 0.5
        assert await store.get(key) is not None
        backend.clock.now += 1
        assert await store.get(key) is None
    else:

        async def gone() -> bool:
            return await store.get(key) is None

        await eventually(gone, timeout=10, message="lease expiry on etcd")
    assert await store.get(other) is not None
    assert await store.lease_keepalive(lease) == 0
    await store.lease_revoke(lease)  # an expired lease: not an error


# Memory only: it needs a clock under the test's control, and etcd's is real time.
@pytest.mark.parametrize("backend_name", ["memory"], indirect=True)
async def test_keepalive_postpones_expiry(backend: Backend) -> None:
    assert backend.clock is not None
    store = backend.store
    lease = await store.lease_grant(10)
    key = backend.key("kept")
    await store.put(key, b"1", lease=lease)
    for _ in range(5):
        backend.clock.now += 9
        assert await store.lease_keepalive(lease) == 10
    assert await store.get(key) is not None
    backend.clock.now += 10
    assert await store.get(key) is None


# --- watches ------------------------------------------------------------------------------------


async def test_watch_replays_history_from_start_revision(backend: Backend) -> None:
    store = backend.store
    a, b = backend.key("w/a"), backend.key("w/b")
    await store.put(backend.key("before"), b"x")
    start = await store.put(a, b"1")
    await store.put(backend.key("outside"), b"not watched")
    await store.put(b, b"2")
    await store.put(a, b"3")
    deleted_at = await store.txn([], [Delete(b)])
    async with contextlib.aclosing(
        store.watch_prefix(backend.key("w/"), start_revision=start)
    ) as stream:
        events = await collect(stream, 4)
    assert described(events) == [
        ("PUT", a, b"1"),
        ("PUT", b, b"2"),
        ("PUT", a, b"3"),
        ("DELETE", b, None),
    ]
    revisions = [e.kv.mod_revision for e in events]
    assert revisions == sorted(revisions) and revisions[0] == start
    assert revisions[-1] == deleted_at.revision
    assert events[2].kv.version == 2


async def test_watch_from_a_later_revision_skips_earlier_events(backend: Backend) -> None:
    store = backend.store
    a = backend.key("w/a")
    await store.put(a, b"1")
    second = await store.put(a, b"2")
    async with contextlib.aclosing(
        store.watch_prefix(backend.key("w/"), start_revision=second)
    ) as stream:
        events = await collect(stream, 1)
    assert described(events) == [("PUT", a, b"2")]


async def test_watch_sees_live_changes_in_order(backend: Backend) -> None:
    store = backend.store
    start = await current_revision(backend) + 1
    keys = [backend.key(f"live/{i}") for i in range(3)]
    async with contextlib.aclosing(
        store.watch_prefix(backend.key("live/"), start_revision=start)
    ) as stream:
        consumer = asyncio.create_task(collect(stream, 5))
        lease = await store.lease_grant(LONG_TTL)
        for key in keys:
            await store.put(key, key.encode(), lease=lease if key == keys[2] else 0)
        await store.delete(keys[0])
        await store.lease_revoke(lease)  # deletes keys[2]
        events = await consumer
    assert described(events) == [
        ("PUT", keys[0], keys[0].encode()),
        ("PUT", keys[1], keys[1].encode()),
        ("PUT", keys[2], keys[2].encode()),
        ("DELETE", keys[0], None),
        ("DELETE", keys[2], None),
    ]


async def test_watch_prefix_delete_events_for_each_key(backend: Backend) -> None:
    store = backend.store
    one, two = backend.key("d/1"), backend.key("d/2")
    await store.put(one, b"1")
    await store.put(two, b"2")
    removed = await current_revision(backend) + 1
    assert await store.delete(backend.key("d/"), prefix=True) == 2
    async with contextlib.aclosing(
        store.watch_prefix(backend.key("d/"), start_revision=removed)
    ) as stream:
        events = await collect(stream, 2)
    assert described(events) == [("DELETE", one, None), ("DELETE", two, None)]
    assert {e.kv.mod_revision for e in events} == {removed}


# --- members ------------------------------------------------------------------------------------


async def test_member_list(backend: Backend, request: pytest.FixtureRequest) -> None:
    members = await backend.store.member_list()
    assert len(members) == 1
    member = members[0]
    assert member.id != 0
    assert member.is_learner is False
    if backend.name == "etcd":
        server: EtcdServer = request.getfixturevalue("etcd_server")
        assert member.name == server.spec.name
        assert member.client_urls == (server.spec.client_url,)
        assert member.peer_urls == (server.spec.peer_url,)


# --- the etcd client's failure modes ------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def client_tls(tmp_path: Path) -> ssl.SSLContext:
    ca = pki.make_ca("unreachable")
    node = pki.issue_cert(ca, "client", ["127.0.0.1"])
    key_files.write_public(tmp_path / "ca.pem", ca.cert_pem)
    key_files.write_public(tmp_path / "node.pem", node.cert_pem)
    key_files.write_private(tmp_path / "node.key", node.key_pem)
    return client_tls_context(
        str(tmp_path / "ca.pem"), str(tmp_path / "node.pem"), str(tmp_path / "node.key")
    )


async def test_closed_port_is_store_unavailable(client_tls: ssl.SSLContext) -> None:
    store = EtcdStore([f"https://127.0.0.1:{_closed_port()}"], tls=client_tls, timeout=0.5)
    try:
        # The guard only keeps a regression from hanging the suite; it is not a speed check.
        async with asyncio.timeout(30):
            for call in (
                store.get("k"),
                store.put("k", b"v"),
                store.txn([], [Put("k", b"v")]),
                store.lease_grant(5),
                store.member_list(),
            ):
                with pytest.raises(StoreUnavailable) as caught:
                    await call
                assert "unreachable" in caught.value.message
    finally:
        await store.close()


async def test_silent_endpoint_times_out_as_store_unavailable(client_tls: ssl.SSLContext) -> None:
    # A socket that accepts connections (the kernel's backlog) but never answers: the TLS
    # handshake stalls and only the client's timeout ends the call.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = EtcdStore([f"https://127.0.0.1:{port}"], tls=client_tls, timeout=0.3)
        try:
            async with asyncio.timeout(30):
                with pytest.raises(StoreUnavailable):
                    await store.get("k")
        finally:
            await store.close()


async def test_watch_on_closed_port_is_store_unavailable(client_tls: ssl.SSLContext) -> None:
    store = EtcdStore([f"https://127.0.0.1:{_closed_port()}"], tls=client_tls, timeout=0.5)
    try:
        async with asyncio.timeout(30):
            with pytest.raises(StoreUnavailable):
                async with contextlib.aclosing(store.watch_prefix("/", start_revision=1)) as s:
                    await anext(s)
    finally:
        await store.close()


async def test_falls_over_to_a_reachable_endpoint(etcd_server: EtcdServer) -> None:
    dead = f"https://127.0.0.1:{_closed_port()}"
    store = EtcdStore([dead, etcd_server.url], tls=etcd_server.tls, timeout=2.0)
    try:
        key = f"/contract/{uuid.uuid4().hex}/failover"
        await store.put(key, b"1")
        kv = await store.get(key)
        assert kv is not None and kv.value == b"1"
        # The endpoint that answered is preferred from now on.
        assert store.endpoints == [etcd_server.url, dead]
        await store.delete(key)
    finally:
        await store.close()


async def test_untrusted_server_certificate_is_unavailable_not_a_crash(
    etcd_server: EtcdServer, client_tls: ssl.SSLContext
) -> None:
    # A client of another CA cannot complete the handshake: reported, never an ssl traceback.
    store = EtcdStore([etcd_server.url], tls=client_tls, timeout=2.0)
    try:
        with pytest.raises(StoreUnavailable):
            await store.get("/contract/x")
    finally:
        await store.close()


async def test_error_in_body_is_store_error(etcd_server: EtcdServer) -> None:
    store = etcd_server.client()
    try:
        # etcd refuses an empty key with an error body (InvalidArgument): the store answered,
        # so it is a StoreError naming etcd's reason, not "unavailable".
        with pytest.raises(StoreError) as caught:
            await store.put("", b"x")
        assert not isinstance(caught.value, StoreUnavailable)
        assert "key is not provided" in caught.value.message
    finally:
        await store.close()


def test_etcd_store_needs_an_endpoint() -> None:
    with pytest.raises(ValueError):
        EtcdStore([], tls=None)


async def test_member_add_learner_and_remove(backend: Backend) -> None:
    store = backend.store
    (original,) = await store.member_list()
    # Learners only: a voter that never starts would cost the one-member etcd its quorum.
    peer, other_peer = "https://127.0.0.1:1", "https://127.0.0.1:2"
    members = await store.member_add([peer], learner=True)
    added = members[0]
    try:
        assert added.is_learner and added.peer_urls == (peer,)
        assert added.id != original.id
        assert {m.id for m in members} == {original.id, added.id}
        assert {m.id: m.is_learner for m in await store.member_list()} == {
            original.id: False,
            added.id: True,
        }
        with pytest.raises(MembershipChangeRefused) as taken:
            await store.member_add([peer], learner=True)
        assert taken.value.reason is MembershipRefusal.PEER_URL_EXISTS
        with pytest.raises(MembershipChangeRefused) as second:
            await store.member_add([other_peer], learner=True)  # one learner at a time
        assert second.value.reason is MembershipRefusal.TOO_MANY_LEARNERS
        assert not second.value.transient
        with pytest.raises(MembershipChangeRefused) as voter:
            await store.member_promote(original.id)  # already a voter
        assert voter.value.reason is MembershipRefusal.NOT_A_LEARNER
    finally:
        await store.member_remove(added.id)
    await store.member_remove(added.id)  # already gone: not an error
    assert [m.id for m in await store.member_list()] == [original.id]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "etcd at https://a:2379: etcdserver: unhealthy cluster",
            MembershipRefusal.UNHEALTHY_CLUSTER,
        ),
        ("etcdserver: too many learner members in cluster", MembershipRefusal.TOO_MANY_LEARNERS),
        ("etcdserver: Peer URLs already exists", MembershipRefusal.PEER_URL_EXISTS),
        ("etcdserver: member ID already exist", MembershipRefusal.PEER_URL_EXISTS),
        ("etcdserver: can only promote a learner member", MembershipRefusal.NOT_A_LEARNER),
    ],
)
def test_etcd_membership_refusals_are_translated(message: str, reason: MembershipRefusal) -> None:
    # "unhealthy cluster" needs a second voter that lost contact to provoke: its translation is
    # checked here on the text etcd sends, as gRPC Unavailable (hence StoreUnavailable).
    refusal = membership_refusal(StoreUnavailable(message))
    assert refusal is not None and refusal.reason is reason
    assert isinstance(refusal, StoreError) and not isinstance(refusal, StoreUnavailable)
    assert refusal.transient is (reason is MembershipRefusal.UNHEALTHY_CLUSTER)


def test_other_etcd_errors_are_no_membership_refusal() -> None:
    assert membership_refusal(StoreUnavailable("cluster store unreachable: refused")) is None
    assert membership_refusal(StoreError("etcdserver: key is not provided")) is None


async def test_set_endpoints_takes_effect_and_ignores_an_empty_list(backend: Backend) -> None:
    store = backend.store
    key = backend.key("endpoints")
    await store.put(key, b"1")
    if isinstance(store, EtcdStore):
        (url,) = store.endpoints
        dead = f"https://127.0.0.1:{_closed_port()}"
        store.set_endpoints([dead])
        with pytest.raises(StoreUnavailable):
            await store.get(key)
        store.set_endpoints([dead, url])
        assert store.endpoints == [dead, url]
    store.set_endpoints([])  # ignored: a client never ends up with nowhere to go
    found = await store.get(key)
    assert found is not None and found.value == b"1"
