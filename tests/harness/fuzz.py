"""Schemathesis against a node's ASGI app, in-process (tests/api/test_openapi_fuzz.py).

Schemathesis' own ASGI transport starts a new event loop per request, but a node (its bootstrap
manager, its runtime on the memory store) lives on one loop. So the node runs on a loop of its
own (an anyio blocking portal, one thread), the document is fetched from the node itself
(`GET /v1/openapi.json`, as a client would), and each generated case is serialized by
Schemathesis (`case.as_transport_kwargs`, the exact bytes its requests transport would send),
sent through httpx's ASGI transport on the node's loop, and checked with
`case.validate_response`.

`FuzzTarget` rebuilds its node when an example changed state the next examples depend on
(`needs_fresh_node`): an accepted bootstrap POST on a fresh node, or a change to the user the
run signs in with. Everything else an example changes (new users, cluster settings) stays.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import requests
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from schemathesis import Case

from harness.api_node import Node

BASE_URL = "http://test"

NodeFactory = Callable[[Path], contextlib.AbstractAsyncContextManager[Node]]


@dataclass
class FuzzTarget:
    """A node on its own loop, rebuilt on demand; counts the requests it answered."""

    portal: BlockingPortal
    make_node: NodeFactory
    root: Path
    headers: dict[str, str]
    needs_fresh_node: Callable[[Case, httpx.Response], bool]
    # An extra check of every answer, run after Schemathesis' own.
    on_response: Callable[[Case, httpx.Response], None] = lambda case, response: None
    requests: int = 0
    rebuilds: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    node: Node | None = None

    def start(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        directory = self.root / f"node-{self.rebuilds}"
        directory.mkdir(parents=True)
        self.node = self._stack.enter_context(
            self.portal.wrap_async_context_manager(self.make_node(directory))
        )

    def close(self) -> None:
        self._stack.close()

    def document(self) -> dict[str, Any]:
        response = self.send("GET", "/v1/openapi.json", {}, b"")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        node = self.node
        assert node is not None

        async def call() -> httpx.Response:
            response = await node.client.request(method, url, headers=headers, content=body)
            await response.aread()
            return response

        return self.portal.call(call)

    def run(self, case: Case, checks: list[Any]) -> None:
        """Send one generated case and check the answer against the document."""
        kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=self.headers)
        prepared = requests.Request(
            method=kwargs["method"],
            url=kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            cookies=kwargs.get("cookies"),
            data=kwargs.get("data"),
            json=kwargs.get("json"),
        ).prepare()
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        response = self.send(str(prepared.method), str(prepared.url), dict(prepared.headers), body)
        self.requests += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks, transport_kwargs=kwargs)
        self.on_response(case, response)
        if self.needs_fresh_node(case, response):
            self.rebuilds += 1
            self.start()


@contextlib.contextmanager
def fuzz_target(
    make_node: NodeFactory,
    root: Path,
    *,
    headers: dict[str, str] | None = None,
    needs_fresh_node: Callable[[Case, httpx.Response], bool] = lambda case, response: False,
) -> Iterator[FuzzTarget]:
    with start_blocking_portal() as portal:
        target = FuzzTarget(portal, make_node, root, headers or {}, needs_fresh_node)
        target.start()
        try:
            yield target
        finally:
            target.close()


def load_schema(target: FuzzTarget) -> Any:
    """The node's own document, loaded by Schemathesis."""
    return schemathesis.openapi.from_dict(target.document())


@contextlib.asynccontextmanager
async def held(node_cm: contextlib.AbstractAsyncContextManager[Node]) -> AsyncIterator[Node]:
    """A node whose bootstrap actions are accepted but never run (see harness.api_node)."""
    async with node_cm as node:
        node.spawner.hold = True
        yield node
