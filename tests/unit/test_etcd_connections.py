"""`EtcdStore` keeps its connection to a member across an idle agent's gaps between calls: a
new connection is a new mutual-TLS handshake for the agent and for etcd, and an idle cluster's
members spent a fifth to a third of their CPU on handshakes (docs/architecture.md, "The
leader's floor"). Against a real etcd 3.4; the connections are this process's own, as the
kernel lists them."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import psutil

from harness.secured_etcd import Secured

# Longer than httpx's default keep-alive (5 s), shorter than an idle agent's gaps (10-30 s):
# the idle time between two calls is what is tested, not a wait for some state.
IDLE_GAP = 6.0


def connections_to(url: str) -> set[int]:
    """Local ports of this process's established TCP connections to `url`'s host and port."""
    parts = urlsplit(url)
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED
        and c.raddr
        and (c.raddr.ip, c.raddr.port) == (parts.hostname, parts.port)
    }


async def test_a_call_after_an_idle_gap_reuses_the_connection(secured: Secured) -> None:
    store = secured.client(secured.node)
    try:
        await store.put("/cnm/a", b"1")
        before = connections_to(secured.url)
        assert before, "no connection to the member after a call"
        await asyncio.sleep(IDLE_GAP)
        found = await store.get("/cnm/a")
        assert found is not None and found.value == b"1"
        assert connections_to(secured.url) == before, "a new connection (and TLS handshake)"
    finally:
        await store.close()
