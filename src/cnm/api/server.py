"""HTTP and HTTPS listeners for one app, and the HTTPS certificate that can change while serving.

Both listeners run in the agent's event loop (uvicorn servers without their own signal
handling: the daemon owns signals). The HTTPS listener's `SSLContext` is kept and its
certificate replaced in place (`load_cert_chain` on the live context), so new connections get
the cluster certificate the moment bootstrap completes, without a restart or a dropped request.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Generator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from cnm.logs import event

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServers:
    def __init__(
        self,
        app: FastAPI,
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
            "timeout_graceful_shutdown": 3,
        }
        self._http = _EmbeddedServer(uvicorn.Config(app, port=http_port, **common))  # type: ignore[arg-type]
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

    async def serve_http(self) -> None:
        await self._http.serve()

    async def serve_https(self) -> None:
        await self._https.serve()

    @property
    def started(self) -> bool:
        return self._http.started and self._https.started

    def stop(self) -> None:
        self._http.should_exit = True
        self._https.should_exit = True
