"""HTTP and HTTPS listeners for one app, and the HTTPS certificate that can change while serving.

Both listeners run in the agent's event loop (uvicorn servers without their own signal
handling: the daemon owns signals). The HTTPS listener's `SSLContext` is kept and its
certificate replaced in place (`load_cert_chain` on the live context), so new connections get
the cluster certificate the moment bootstrap completes, without a restart or a dropped request.
Plain HTTP can be closed and reopened while the agent runs (`set_http_support`, driven by the
cluster's `http_support`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Generator
from email.utils import formatdate
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from uvicorn.server import ServerState

from cnm.api.slow_clients import KEEP_ALIVE_TIMEOUT, guarded_protocol
from cnm.logs import event

log = logging.getLogger(__name__)


class _DateOnRead(ServerState):
    """uvicorn's shared server state, whose default headers (the Date header) are made when a
    response reads them, at most once a second, instead of by a timer in the main loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._config = config
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        second = int(time.time())
        if second != self._second:
            date = [(b"date", formatdate(second, usegmt=True).encode())]
            extra = getattr(self._config, "encoded_headers", [])  # set by config.load()
            self._headers = (date if self._config.date_header else []) + extra
            self._second = second
        return self._headers

    @default_headers.setter
    def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        """Ignored: uvicorn's on_tick would set them; they are made on read."""


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server in the agent's loop. Its main loop sleeps until it is told to exit,
    where uvicorn's own wakes ten times a second to refresh the Date header (made on read here,
    `_DateOnRead`): with two listeners, those wake-ups were most of an idle agent's CPU."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)
        self.server_state = _DateOnRead(config)

    @property
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def main_loop(self) -> None:
        # No limits on requests and no notify callback are configured: only exit is awaited.
        await self._exit.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServers:
    def __init__(
        self,
        app: Starlette,
        *,
        host: str,
        http_port: int,
        https_port: int,
        cert_file: Path,
        key_file: Path,
    ) -> None:
        common = {
            "host": host,
            "lifespan": "off",
            "log_config": None,
            "access_log": False,
            "server_header": False,
            # No forwarding header is trusted (api/context.py `sign_in_attempt`): uvicorn would
            # take X-Forwarded-For from loopback peers as the client address by default.
            "proxy_headers": False,
            "timeout_graceful_shutdown": 3,
            "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
            # h11 with deadlines for slow or silent clients (api/slow_clients.py).
            "http": guarded_protocol(),
        }
        self._http_config = uvicorn.Config(app, port=http_port, **common)  # type: ignore[arg-type]
        self._http = _EmbeddedServer(self._http_config)
        # Whether plain HTTP should listen (the cluster's `http_support`); HTTPS always does.
        self._http_wanted = asyncio.Event()
        self._http_wanted.set()
        self._stopping = False
        https_config = uvicorn.Config(
            app,
            port=https_port,
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            **common,  # type: ignore[arg-type]
        )
        https_config.load()
        assert https_config.ssl is not None
        self._tls: ssl.SSLContext = https_config.ssl
        self._https = _EmbeddedServer(https_config)

    def use_certificate(self, cert_file: Path, key_file: Path) -> None:
        """Serve new HTTPS connections with this certificate from now on."""
        self._tls.load_cert_chain(str(cert_file), str(key_file))
        log.info("HTTPS certificate switched to %s", cert_file, extra=event("https_switched"))

    def set_http_support(self, enabled: bool) -> None:
        """Open (True) or close (False) the plain HTTP listener; a no-op when it already is."""
        if enabled == self._http_wanted.is_set():
            return
        if enabled:
            self._http_wanted.set()
        else:
            self._http_wanted.clear()
            self._http.should_exit = True
        log.info(
            "plain HTTP %s (cluster http_support)",
            "opened" if enabled else "closed",
            extra=event("http_support", enabled=enabled),
        )

    @property
    def http_support(self) -> bool:
        return self._http_wanted.is_set()

    async def serve_http(self) -> None:
        """Serve plain HTTP while it is wanted, until `stop`; a new uvicorn server each time it
        is reopened (a stopped one cannot be started again)."""
        while not self._stopping:
            await self._http_wanted.wait()
            if self._stopping:
                return
            if self._http.started or self._http.should_exit:
                self._http = _EmbeddedServer(self._http_config)
            await self._http.serve()

    async def serve_https(self) -> None:
        await self._https.serve()

    @property
    def started(self) -> bool:
        return (self._http.started or not self.http_support) and self._https.started

    def stop(self) -> None:
        self._stopping = True
        self._http_wanted.set()
        self._http.should_exit = True
        self._https.should_exit = True
