"""`EtcdStore` with etcd authentication on, against a real etcd 3.4 (store/etcd_auth.py).

One etcd per test (each switches auth on in its own store): the client authenticates lazily,
gets a new token once when etcd calls its token invalid, takes a `root` session for member
changes and users only, and says `StoreAccessRefused` once its own user is gone.
"""

from __future__ import annotations

import asyncio

import pytest

from cnm.errors import StoreAccessRefused, StoreError, StoreUnavailable
from cnm.store import etcd_auth
from cnm.store.base import EventType
from cnm.store.etcd_auth import StoreCredentials
from harness.secured_etcd import Secured


async def test_a_node_reads_and_writes_its_keys_with_a_token_and_nothing_else(
    secured: Secured,
) -> None:
    store = secured.client(secured.node)
    anonymous = secured.client(None)
    try:
        await store.put("/cnm/a", b"1")
        found = await store.get("/cnm/a")
        assert found is not None and found.value == b"1"
        with pytest.raises(StoreError, match="permission denied"):
            await store.put("/outside", b"1")
        with pytest.raises(StoreError, match="user name is empty"):
            await anonymous.get("/cnm/a")
    finally:
        await store.close()
        await anonymous.close()


async def test_an_invalid_token_is_replaced_once_and_the_call_goes_through(
    secured: Secured,
) -> None:
    store = secured.client(secured.node)
    try:
        await store.put("/cnm/b", b"1")
        slot = (secured.url, secured.node.user)
        first = store._tokens[slot]
        store._tokens[slot] = "forged.1"  # what an expired token looks like to etcd
        assert (await store.get("/cnm/b")) is not None
        assert store._tokens[slot] not in ("forged.1", first)
    finally:
        await store.close()


async def test_watches_carry_the_token(secured: Secured) -> None:
    store = secured.client(secured.node)
    try:
        _, revision = await store.get_prefix("/cnm/w/")
        stream = store.watch_prefix("/cnm/w/", start_revision=revision + 1)
        await store.put("/cnm/w/x", b"1")
        async with asyncio.timeout(5):
            event = await anext(aiter(stream))
        assert event.type is EventType.PUT and event.kv.key == "/cnm/w/x"
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_a_watch_refused_for_its_token_drops_it_and_the_next_watch_works(
    secured: Secured,
) -> None:
    # The snapshot watches again after a break (cluster/snapshot.py): the refused token must
    # not be sent again, or an expired token would keep the node's watch down for good.
    store = secured.client(secured.node)
    try:
        _, revision = await store.get_prefix("/cnm/w/")
        slot = (secured.url, secured.node.user)
        store._tokens[slot] = "forged.1"  # what an expired token looks like to etcd
        refused = store.watch_prefix("/cnm/w/", start_revision=revision + 1)
        with pytest.raises(StoreUnavailable):
            async with asyncio.timeout(5):
                await anext(aiter(refused))
        assert store._tokens.get(slot) != "forged.1"
        stream = store.watch_prefix("/cnm/w/", start_revision=revision + 1)
        await store.put("/cnm/w/y", b"1")
        async with asyncio.timeout(5):
            event = await anext(aiter(stream))
        assert event.kv.key == "/cnm/w/y"
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_member_changes_and_users_run_as_root_and_a_deleted_user_is_refused(
    secured: Secured,
) -> None:
    store = secured.client(secured.node)
    try:
        # A node's member list needs no root; adding a user does, and works through the client.
        assert len(await store.member_list()) == 1
        other = StoreCredentials("node:2", etcd_auth.new_password())
        await store.put_store_user(other.user, other.password)
        second = secured.client(other)
        try:
            await second.put("/cnm/c", b"2")
            # A new password ends the old one (a replacement of uid 2).
            await store.put_store_user(other.user, etcd_auth.new_password())
            second._tokens.clear()
            with pytest.raises(StoreAccessRefused):
                await second.get("/cnm/c")
            await store.delete_store_user(other.user)
            await store.delete_store_user(other.user)  # gone already: no error
            with pytest.raises(StoreAccessRefused):
                await second.get("/cnm/c")
        finally:
            await second.close()
        # The node's own token is no root token: asked directly, etcd refuses it.
        with pytest.raises(StoreError, match="permission denied"):
            await store._call("/v3/auth/user/add", {"name": "x", "password": "y"})
    finally:
        await store.close()
