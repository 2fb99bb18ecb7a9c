"""A minimal HTTP/1.1 load generator for the throughput benchmarks (bench_auth, bench_status).

Keep-alive connections of asyncio streams, one request in flight per connection (no
pipelining), each response read by its Content-Length: so little work per request that the
client costs a fraction of the server it loads, which is what makes a single-core server's rate
measurable from one Python process. Optionally over TLS (the certificate is not verified: the
benchmarks load their own agents on loopback).

`blast()` sends a fixed number of requests and returns the elapsed time, the statuses seen and
every request's latency (send to last byte read), so callers can report req/s and percentiles.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# Generous: on a shared 2-core machine a server pinned to a busy core can stall for seconds.
CONNECT_TIMEOUT = 30.0
# No single response of a loopback benchmark takes this long unless the server is stuck.
RESPONSE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Endpoint:
    """Where requests go and what they are: host, port, raw request bytes, TLS or not."""

    host: str
    port: int
    request: bytes
    tls: bool = False


@dataclass(frozen=True)
class Blast:
    """One measurement: `total` requests answered in `elapsed` seconds."""

    elapsed: float
    statuses: Counter[int]
    latencies: list[float]  # seconds, one per request

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed


def get_request(host: str, port: int, path: str, authorization: str | None = None) -> bytes:
    """The bytes of `GET path` with a Host header, and `Authorization` when given."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: */*"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one response (Content-Length framed, as every cnm answer is)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def fetch_once(target: Endpoint) -> tuple[int, bytes]:
    """One request on a new connection: status and body."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            target.host, target.port, ssl=_client_tls() if target.tls else None
        ),
        CONNECT_TIMEOUT,
    )
    try:
        writer.write(target.request)
        return await asyncio.wait_for(read_response(reader), RESPONSE_TIMEOUT)
    finally:
        writer.close()


async def blast(target: Endpoint, total: int, concurrency: int) -> Blast:
    """`total` requests over `concurrency` keep-alive connections, opened before the clock
    starts (a TLS handshake is not part of the measured rate)."""
    share = [
        total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)
    ]
    tls = _client_tls() if target.tls else None
    connections = [
        await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=tls), CONNECT_TIMEOUT
        )
        for _ in share
    ]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for _ in range(n):
            sent = clock()
            writer.write(target.request)
            status, _ = await asyncio.wait_for(read_response(reader), RESPONSE_TIMEOUT)
            latencies.append(clock() - sent)
            statuses[status] += 1

    start = clock()
    try:
        await asyncio.gather(
            *(worker(r, w, n) for (r, w), n in zip(connections, share, strict=True))
        )
        elapsed = clock() - start
    finally:
        for _, writer in connections:
            writer.close()
    return Blast(elapsed, statuses, latencies)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0..1) of `samples`, interpolated between order statistics."""
    if len(samples) == 1:
        return float(samples[0])
    cuts = statistics.quantiles(samples, n=1000, method="inclusive")
    index = min(max(round(fraction * 1000) - 1, 0), len(cuts) - 1)
    return cuts[index]
