"""Lease keep-alives on etcd's gRPC stream: one long-lived `Lease/LeaseKeepAlive` call per node.

Why not the JSON gateway, as for every other call (store/etcd.py): a keep-alive is the only
request an idle node makes, every few seconds, and through the gateway each one is a new HTTPS
request that etcd parses, turns into a new gRPC stream on its own loopback connection, and
answers in JSON. With 100 nodes that was most of the leader's idle CPU. On the gRPC port the
same keep-alive is one small frame on a stream that stays open, for etcd and for the agent.

Why our own few frames of HTTP/2 and not a library: the one call needs only a handful of frame
types (below), with no header decoding. `grpcio` would add a large native module to every
agent; installing `h2` makes httpx import it eagerly in every agent (about 4 MiB each, measured),
against the footprint budget (issue 12 §4).

What is spoken (RFC 9113, gRPC over HTTP/2): the client preface and SETTINGS; one HEADERS frame
opening stream 1 with literal header fields (HPACK without indexing or Huffman coding, which
any decoder accepts); then per keep-alive one DATA frame holding one gRPC message (a 5-byte
prefix, then the protobuf `LeaseKeepAliveRequest{ID}`). From etcd we read DATA (the answers),
SETTINGS (acknowledged), PING (answered), WINDOW_UPDATE and CONTINUATION (ignored). Every
DATA frame's bytes are handed back at once with WINDOW_UPDATE, so flow control never stalls.
HEADERS blocks are not decoded: the response's opening headers are skipped, and a HEADERS
frame that ends the stream (gRPC trailers: etcd ended the call), RST_STREAM or GOAWAY close it.

Any surprise closes the stream and raises `LeaseStreamError`; `StreamedKeepAlives` then has the
caller renew through the gateway and opens a new stream later.

The stream goes to the node's preferred member (its own, for a voter), and follows it when the
preferred member changes. Lease keep-alives need
no etcd token (etcd checks none for them), so the stream carries none: the TLS client
certificate is the only credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from urllib.parse import urlsplit

from cnm.store.base import LeaseRenewal
from cnm.store.etcd_wire import client_tls_context
from cnm.store.protobuf_wire import read_varint

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_STREAM = 1  # the only stream this connection opens
_MAX_FRAME = 1 << 14  # SETTINGS_MAX_FRAME_SIZE's default: etcd sends no larger frame to us
_MAX_MESSAGE = 1 << 12  # an answer is a few dozen bytes
_PATH = "/etcdserverpb.Lease/LeaseKeepAlive"
# Seconds before a new stream is tried after one failed (keep-alives use the gateway meanwhile).
RETRY_AFTER = 30.0
# Seconds a keep-alive waits on the stream before the gateway takes over: a healthy leader
# answers in milliseconds; a member cut off from the leader would hold the answer.
ANSWER_TIMEOUT = 1.5

log = logging.getLogger(__name__)


class LeaseStreamError(Exception):
    """The keep-alive stream failed or was closed; renew another way and open a new one."""


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # a negative int64 is sent as its 64-bit two's complement
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    try:
        return read_varint(data, at)
    except ValueError:
        raise LeaseStreamError("malformed protobuf varint in a keep-alive answer") from None


def _fields(data: bytes) -> dict[int, int | bytes]:
    """The varint and length-delimited fields of one protobuf message (last one wins)."""
    fields: dict[int, int | bytes] = {}
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields[number], at = _read_varint(data, at)
        elif wire == 2:
            size, at = _read_varint(data, at)
            if at + size > len(data):
                raise LeaseStreamError("truncated protobuf field in a keep-alive answer")
            fields[number], at = data[at : at + size], at + size
        else:
            raise LeaseStreamError(f"unexpected protobuf wire type {wire} in a keep-alive answer")
    return fields


def _int64(value: int | bytes | None) -> int:
    if not isinstance(value, int):
        return 0
    return value - (1 << 64) if value >= 1 << 63 else value


def keepalive_request(lease_id: int) -> bytes:
    """The gRPC message of `LeaseKeepAliveRequest{ID: lease_id}` (field 1, varint)."""
    body = b"\x08" + _varint(lease_id)
    return b"\x00" + struct.pack(">I", len(body)) + body


def parse_keepalive_answer(body: bytes) -> tuple[int, LeaseRenewal]:
    """(lease ID, renewal) of one `LeaseKeepAliveResponse`: field 1 the header (its revision
    is field 3, its raft term field 4), field 2 the ID, field 3 the TTL."""
    fields = _fields(body)
    raw_header = fields.get(1, b"")
    header = _fields(raw_header) if isinstance(raw_header, bytes) else {}
    renewal = LeaseRenewal(
        ttl=_int64(fields.get(3)),
        revision=_int64(header.get(3)),
        raft_term=_int64(header.get(4)),
    )
    return _int64(fields.get(2)), renewal


def _literal(name: str, value: str) -> bytes:
    """One HPACK 'literal header field without indexing, new name' (RFC 7541 §6.2.2)."""
    out = bytearray(b"\x00")
    for text in (name.encode(), value.encode()):
        out += _hpack_length(len(text)) + text
    return bytes(out)


def _hpack_length(length: int) -> bytes:
    """A string length as an HPACK integer with a 7-bit prefix and no Huffman flag."""
    if length < 0x7F:
        return bytes([length])
    out = bytearray([0x7F])
    length -= 0x7F
    while length >= 0x80:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out)


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    head = struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream)
    return head + payload


class LeaseKeepAliveStream:
    """One gRPC LeaseKeepAlive call to the etcd member at `endpoint` (an https client URL).
    `tls` must offer ALPN "h2" (see `grpc_tls`). One keep-alive at a time (`renew`)."""

    def __init__(self, endpoint: str, tls: ssl.SSLContext, timeout: float) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "https" or not parts.hostname:
            raise LeaseStreamError(f"not an https etcd endpoint: {endpoint}")
        self.endpoint = endpoint
        self._host = parts.hostname
        self._port = parts.port or 2379
        self._tls = tls
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = b""  # gRPC bytes received and not yet a whole message
        self._lock = asyncio.Lock()

    async def renew(self, lease_id: int) -> LeaseRenewal:
        """Keep `lease_id` alive; the answer of the member. Raises `LeaseStreamError` (the
        stream is closed then) on any failure, including the timeout."""
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    if self._writer is None:
                        await self._open()
                    assert self._writer is not None
                    payload = keepalive_request(lease_id)
                    self._writer.write(_frame(_DATA, 0, _STREAM, payload))
                    await self._writer.drain()
                    while True:
                        answered, renewal = parse_keepalive_answer(await self._message())
                        if answered == lease_id:
                            return renewal
                        # An answer to an earlier keep-alive that timed out: not ours.
            except LeaseStreamError:
                await self.close()
                raise
            except (OSError, EOFError, TimeoutError, ssl.SSLError) as exc:
                await self.close()
                raise LeaseStreamError(
                    f"lease keep-alive stream to {self.endpoint}: {type(exc).__name__} {exc}"
                ) from exc

    async def close(self) -> None:
        writer, self._writer, self._reader, self._buffer = self._writer, None, None, b""
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self._host, self._port, ssl=self._tls, server_hostname=self._host
        )
        transport_ssl = self._writer.get_extra_info("ssl_object")
        if transport_ssl is None or transport_ssl.selected_alpn_protocol() != "h2":
            raise LeaseStreamError(f"{self.endpoint} did not agree to HTTP/2")
        # SETTINGS: no server push (2 = 0). Then the call's headers, literal and unindexed.
        settings = _frame(_SETTINGS, 0, 0, struct.pack(">HI", 2, 0))
        headers = b"".join(
            _literal(name, value)
            for name, value in (
                (":method", "POST"),
                (":scheme", "https"),
                (":path", _PATH),
                (":authority", f"{self._host}:{self._port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            )
        )
        self._writer.write(_PREFACE + settings + _frame(_HEADERS, _END_HEADERS, _STREAM, headers))
        await self._writer.drain()

    async def _message(self) -> bytes:
        """The next whole gRPC message on the stream."""
        while True:
            if len(self._buffer) >= 5:
                compressed, size = self._buffer[0], struct.unpack(">I", self._buffer[1:5])[0]
                if compressed or size > _MAX_MESSAGE:
                    raise LeaseStreamError("unexpected gRPC message (compressed or too large)")
                if len(self._buffer) >= 5 + size:
                    body, self._buffer = self._buffer[5 : 5 + size], self._buffer[5 + size :]
                    return body
            self._buffer += await self._data()

    async def _data(self) -> bytes:
        """Read frames until a DATA frame of the stream arrives; answer the connection's own
        frames meanwhile."""
        assert self._reader is not None and self._writer is not None
        while True:
            head = await self._reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            if length > _MAX_FRAME:
                raise LeaseStreamError(f"HTTP/2 frame of {length} bytes from {self.endpoint}")
            payload = await self._reader.readexactly(length)
            if kind == _SETTINGS and not flags & _ACK:
                self._writer.write(_frame(_SETTINGS, _ACK, 0))
            elif kind == _PING and not flags & _ACK:
                self._writer.write(_frame(_PING, _ACK, 0, payload))
            elif kind in (_RST_STREAM, _GOAWAY) or (
                kind in (_HEADERS, _DATA) and stream == _STREAM and flags & _END_STREAM
            ):
                raise LeaseStreamError(f"etcd at {self.endpoint} ended the keep-alive stream")
            elif kind == _DATA and stream == _STREAM:
                if length:
                    # Hand the window back at once (connection and stream).
                    update = struct.pack(">I", length)
                    self._writer.write(
                        _frame(_WINDOW_UPDATE, 0, 0, update)
                        + _frame(_WINDOW_UPDATE, 0, _STREAM, update)
                    )
                if flags & _PADDED:
                    if not payload or payload[0] >= len(payload):
                        raise LeaseStreamError("malformed padded HTTP/2 DATA frame")
                    payload = payload[1 : len(payload) - payload[0]]
                return payload
            # HEADERS (the response's opening), CONTINUATION, WINDOW_UPDATE, acks: nothing to do


class StreamedKeepAlives:
    """Keep-alives on one `LeaseKeepAliveStream` to the member the caller names, opened on
    first use and again when the caller names another; `renew` returns None when the caller
    should renew another way (the stream failed just now, or less than RETRY_AFTER ago).
    `failed_at` names the member whose stream failed in the last `renew`, if it did."""

    def __init__(self, tls: ssl.SSLContext, timeout: float) -> None:
        self._tls = tls
        self._timeout = min(timeout, ANSWER_TIMEOUT)
        self._stream: LeaseKeepAliveStream | None = None
        self._after = 0.0  # monotonic time before which no new stream is opened
        self.failed_at: str | None = None

    async def renew(self, lease_id: int, endpoint: str) -> LeaseRenewal | None:
        """Renew on the stream to `endpoint` (the preferred member's client URL)."""
        self.failed_at = None
        if self._stream is not None and self._stream.endpoint != endpoint:
            await self.close()  # the preferred member changed: follow it
        if self._stream is None:
            if time.monotonic() < self._after:
                return None
            self._stream = LeaseKeepAliveStream(endpoint, self._tls, self._timeout)
        try:
            return await self._stream.renew(lease_id)
        except LeaseStreamError as exc:
            log.info("%s; keep-alives use the JSON gateway for a while", exc)
            self._stream = None
            self._after = time.monotonic() + RETRY_AFTER
            self.failed_at = endpoint
            return None

    @property
    def endpoint(self) -> str | None:
        """The member the open stream goes to, if one is open."""
        return self._stream.endpoint if self._stream is not None else None

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None


def grpc_tls(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """Mutual TLS towards etcd's gRPC port: the cluster CA, this node's certificate, ALPN h2.
    A context of its own: httpx sets its own ALPN on the context it is given."""
    context = client_tls_context(ca_file, cert_file, key_file)
    context.set_alpn_protocols(["h2"])
    return context
