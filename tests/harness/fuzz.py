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
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from harness.api_node import Node

BASE_URL = "http://test"
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# The only 5xx the API may answer: the documented 503s (no cluster yet; store not reachable).
ALLOWED_5XX = {503: {"no_cluster", "store_unavailable"}}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def no_server_error(case: Case, response: httpx.Response) -> None:
    if response.status_code < 500:
        return
    allowed = ALLOWED_5XX.get(response.status_code, set())
    code = response.json().get("error_code") if response.content else None
    assert code in allowed, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    )


def fuzz_operations(
    schema: Any,
    run: Callable[[Case], None],
    *,
    requests: int,
    include: Callable[[Any], bool] = lambda operation: True,
) -> None:
    """Generate cases for every operation `include`s, in both modes, about `requests` in all,
    spread evenly over the operations that have something to vary (a body or a path
    parameter); an operation with nothing to vary is generated once. `run` sends and checks
    one case (it may `hypothesis.assume(False)` to leave one out)."""
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [operation for operation in operations if include(operation)]
    varied = [op for op in operations if list(op.body) or list(op.path_parameters)]
    constant = len(operations) - len(varied)
    examples = max(1, -(-(requests - constant) // (len(varied) * len(MODES))))
    for operation in operations:
        for mode in MODES if operation in varied else MODES[:1]:

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: Case) -> None:
                run(case)

            fuzz()


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
    on_response: Callable[[Case, httpx.Response], None] = no_server_error
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
        # After bootstrap the document needs credentials like every route.
        response = self.send("GET", "/v1/openapi.json", dict(self.headers), b"")
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

    def run(self, case: Case, checks: list[Any] = CHECKS) -> None:
        """Send one generated case and check the answer against the document."""
        request = Prepared.of(case, BASE_URL, self.headers)
        response = self.send(request.method, request.url, request.headers, request.body)
        self.requests += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks, transport_kwargs=request.kwargs)
        self.on_response(case, response)
        if self.needs_fresh_node(case, response):
            self.rebuilds += 1
            self.start()


@dataclass(frozen=True)
class Prepared:
    """A case as the exact request Schemathesis' requests transport would send."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, case: Case, base_url: str, headers: dict[str, str]) -> Prepared:
        kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
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
        return cls(str(prepared.method), str(prepared.url), dict(prepared.headers), body, kwargs)


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
