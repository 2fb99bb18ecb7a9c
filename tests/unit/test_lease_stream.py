"""Lease keep-alives on etcd's gRPC stream (store/lease_stream.py), against a real etcd 3.4 with
authentication on and cnm's TLS; and the fall-back to the gateway when the stream fails."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from cnm.store.base import LeaseRenewal
from cnm.store.lease_stream import (
    ANSWER_TIMEOUT,
    LeaseKeepAliveStream,
    LeaseStreamError,
    grpc_tls,
    keepalive_request,
    parse_keepalive_answer,
)
from harness.secured_etcd import Secured


def _stream(secured: Secured) -> LeaseKeepAliveStream:
    files = (str(secured.ca_file), str(secured.cert[0]), str(secured.cert[1]))
    return LeaseKeepAliveStream(secured.url, grpc_tls(*files), timeout=3.0)


def test_messages_round_trip_including_negative_and_large_values() -> None:
    assert keepalive_request(1) == b"\x00\x00\x00\x00\x02\x08\x01"
    big = (1 << 62) + 12345
    assert keepalive_request(big)[5:6] == b"\x08"
    # header {revision 300, raft_term 2}, ID big, TTL -1 (10-byte two's complement varint)
    header = b"\x18\xac\x02\x20\x02"
    body = b"\x0a" + bytes([len(header)]) + header + b"\x10" + keepalive_request(big)[6:]
    body += b"\x18" + b"\xff" * 9 + b"\x01"
    assert parse_keepalive_answer(body) == (big, LeaseRenewal(ttl=-1, revision=300, raft_term=2))
    with pytest.raises(LeaseStreamError):
        parse_keepalive_answer(b"\x0a\x05\x18")  # a field longer than the message
    with pytest.raises(LeaseStreamError):
        parse_keepalive_answer(b"\x0d\x00\x00\x00\x00")  # fixed32: not in this message


async def test_the_stream_renews_leases_and_reports_the_members_header(secured: Secured) -> None:
    store = secured.client(secured.node)
    stream = _stream(secured)
    try:
        lease = await store.lease_grant(30)
        revision = await store.put("/cnm/probe", b"x", lease=lease)
        renewal = await stream.renew(lease)
        assert 25 <= renewal.ttl <= 30
        assert renewal.revision >= revision
        assert renewal.raft_term >= 1
        # Past the 64 KiB HTTP/2 flow-control windows: the stream hands its window back.
        for _ in range(2500):
            assert (await stream.renew(lease)).ttl > 0
        await store.lease_revoke(lease)
        assert (await stream.renew(lease)).ttl <= 0  # gone: etcd answers TTL 0 or less
        assert await store.get("/cnm/probe") is None
    finally:
        await stream.close()
        await store.close()


async def test_the_store_falls_back_to_the_gateway_when_the_stream_breaks(
    secured: Secured,
) -> None:
    store = secured.client(secured.node, grpc=True)
    try:
        lease = await store.lease_grant(30)
        assert (await store.lease_renew(lease)).ttl > 0
        assert store._keepalives is not None
        assert store._keepalives.endpoint == secured.url  # the stream carried it
        await secured.etcd.stop()
        await secured.etcd.start()
        await secured.etcd.wait_ready(store)
        # The stream's connection died with the member: this renewal goes through the gateway.
        renewal = await store.lease_renew(lease)
        assert renewal.ttl > 0 and renewal.raft_term >= 1
        assert store._keepalives.endpoint is None  # no stream for a while: the gateway answers
    finally:
        await store.close()


async def test_a_server_that_does_not_speak_http2_is_refused_and_the_gateway_renews(
    secured: Secured,
) -> None:
    """A TLS server that offers no ALPN h2 (e.g. a proxy in front of etcd's gateway only)."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(str(secured.member_cert[0]), str(secured.member_cert[1]))
    host = secured.url.removeprefix("https://").rsplit(":", 1)[0]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, host, 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    files = (str(secured.ca_file), str(secured.cert[0]), str(secured.cert[1]))
    stream = LeaseKeepAliveStream(f"https://{host}:{port}", grpc_tls(*files), timeout=3.0)
    try:
        with pytest.raises(LeaseStreamError, match="HTTP/2"):
            await stream.renew(1)
    finally:
        await stream.close()
        server.close()
        await server.wait_closed()


async def test_a_member_silent_on_its_stream_is_not_asked_again_through_the_gateway(
    secured: Secured,
) -> None:
    """A preferred member that takes connections and never answers (as one cut off by a
    partition does): the keep-alive falls back to the gateway at the other member at once,
    instead of waiting out the silent one's timeout a second time."""
    host = secured.url.removeprefix("https://").rsplit(":", 1)[0]
    silent = socket.socket()
    silent.bind((host, 0))
    silent.listen(8)  # the kernel completes handshakes; nothing ever reads or answers
    silent_url = f"https://{host}:{silent.getsockname()[1]}"
    store = secured.client(secured.node, grpc=True)
    try:
        lease = await store.lease_grant(30)
        store.set_endpoints([silent_url, secured.url])
        loop = asyncio.get_running_loop()
        began = loop.time()
        renewal = await store.lease_renew(lease)
        took = loop.time() - began
        assert renewal.ttl > 0
        # The stream's answer timeout (1.5 s) and one gateway call; not a second timeout (3 s).
        assert took < ANSWER_TIMEOUT + 1.0, took
        assert store.endpoints == [secured.url, silent_url]
    finally:
        await store.close()
        silent.close()
