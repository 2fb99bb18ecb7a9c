"""The baseline server of bench_status.py: a bare Starlette app that answers GET /v1/bootstrap
with fixed bytes, under uvicorn with its defaults (no middleware, no routing beyond one route).

    python bench/bare_status_app.py HOST PORT BODY_FILE

BODY_FILE holds the body a cnm agent answered, so both servers send the same bytes; what the
benchmark compares is then everything cnm does per request beyond writing them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def make_app(body: bytes) -> Starlette:
    async def status(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/v1/bootstrap", status)])


def main() -> None:
    host, port, body_file = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    uvicorn.run(
        make_app(body_file.read_bytes()),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
