"""A node's API on its ASGI app, for the tests under tests/api: a real `BootstrapManager` on a
temporary data dir, a real `PasswordVerifier`, and an httpx client that calls the app in-process
(no sockets).

`bootstrapped_node` is such a node after a real create_cluster on the in-memory store
(`memory_backend`): the whole API after bootstrap, with no etcd and no agent process.

The manager runs bootstrap actions as tasks of the test's event loop, as the agent does. A test
can hold them back (`node.spawner.hold = True`) to look at the state between the accepted POST
and the run. Runs that fail semantically never reach etcd; the configured etcd binary does not
exist, so one that did would end in `error` instead of starting a stray etcd. A join reaches its
member and the store through `join_wiring` (harness/inprocess.py: another such node, in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cnm.api.app import ApiApp, create_app
from cnm.api.auth import Authenticator, FailureLimiter
from cnm.api.context import ApiContext
from cnm.bootstrap.join import NETWORK_WIRING, JoinWiring
from cnm.bootstrap.manager import BootstrapManager
from cnm.cluster.runtime import ClusterRuntime, StoreBackend
from cnm.config import NodeConfig
from cnm.node.data_dir import DataDir
from cnm.security.passwords import PasswordVerifier
from cnm.store.memory import MemoryMember, MemoryStore
from harness.agents import basic
from harness.bodies import ADMIN, create_body


class Spawner:
    """The manager's `spawn`: a task of the running loop, or held back while `hold` is set."""

    def __init__(self) -> None:
        self.hold = False
        self.held: list[Coroutine[Any, Any, None]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        if self.hold:
            self.held.append(coroutine)
            return None
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        return task

    async def release(self) -> None:
        """Run the held actions to their end."""
        held, self.held = self.held, []
        for coroutine in held:
            await coroutine

    async def close(self) -> None:
        for coroutine in self.held:
            coroutine.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class Node:
    config: NodeConfig
    manager: BootstrapManager
    app: ApiApp
    client: httpx.AsyncClient
    spawner: Spawner
    completed: list[ClusterRuntime] = field(default_factory=list)

    @property
    def status_file(self) -> Path:
        return DataDir(self.config.data_dir).status_file

    def status_file_bytes(self) -> bytes | None:
        try:
            return self.status_file.read_bytes()
        except FileNotFoundError:
            return None

    async def bootstrap_status(self, **kw: Any) -> dict[str, Any]:
        response = await self.client.get("/v1/bootstrap", **kw)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()["bootstrap_status"]
        return status

    async def wait_state(self, *states: str, timeout: float = 10.0, **kw: Any) -> dict[str, Any]:
        """Poll GET /v1/bootstrap until the state is one of `states` (deadline, no fixed wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.bootstrap_status(**kw)
            if status["state"] in states:
                return status
            if loop.time() > deadline:
                raise AssertionError(f"state {states} not reached in {timeout} s: {status}")
            await asyncio.sleep(0.01)

    def file_status(self) -> dict[str, Any] | None:
        """The status record on disk, parsed (it must always parse: written atomically)."""
        raw = self.status_file_bytes()
        if raw is None:
            return None
        document: dict[str, Any] = json.loads(raw)
        return document


def node_config(tmp_path: Path, **overrides: Any) -> NodeConfig:
    persist, ephemeral = tmp_path / "persist", tmp_path / "tmp"
    persist.mkdir(exist_ok=True)
    ephemeral.mkdir(exist_ok=True)
    settings: dict[str, Any] = {
        "addr": "127.0.0.1",
        "data_dir": tmp_path / "data",
        "persistent_path": persist,
        "ephemeral_path": ephemeral,
        "bigstore_path": tmp_path / "flash",
        "etcd_binary": str(tmp_path / "no-such-etcd"),
    }
    settings.update(overrides)
    return NodeConfig(**settings)


def memory_backend(store: MemoryStore | None = None) -> StoreBackend:
    """Every store client the node opens is `store` (one cluster store, as etcd is), and its
    store member is a `MemoryMember`."""
    shared = store if store is not None else MemoryStore()
    return StoreBackend(
        open_store=lambda endpoints, tls: shared,
        make_member=lambda binary, spec: MemoryMember(),
    )


@contextlib.asynccontextmanager
async def running_node(
    config: NodeConfig,
    *,
    join_wiring: JoinWiring = NETWORK_WIRING,
    backend: StoreBackend | None = None,
) -> AsyncIterator[Node]:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    spawner = Spawner()
    completed: list[ClusterRuntime] = []

    async def on_completed(runtime: ClusterRuntime, credentials: tuple[str, str] | None) -> None:
        del credentials  # the agent pre-fills its password cache with them; not needed here
        # As the agent does: keep the snapshot current and the node's liveness lease alive.
        completed.append(runtime)
        task = asyncio.get_running_loop().create_task(runtime.run())
        spawner.tasks.add(task)

    if backend is None:
        manager = BootstrapManager(
            config, spawn=spawner, on_completed=on_completed, join_wiring=join_wiring
        )
    else:
        manager = BootstrapManager(
            config,
            spawn=spawner,
            on_completed=on_completed,
            join_wiring=join_wiring,
            backend=backend,
        )
    verifier = PasswordVerifier(ttl_seconds=config.auth_cache_seconds)
    # The API tests send many wrong passwords from one address on purpose (every route must ask
    # for credentials); the per-address limiter is tested on its own (tests/unit/test_sign_in.py)
    # and on real agents (tests/cluster/test_sign_in_flood.py).
    authenticator = Authenticator(verifier, limiter=FailureLimiter(burst=100_000))
    app = create_app(ApiContext(config, manager, authenticator))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Node(config, manager, app, client, spawner, completed)
    finally:
        await spawner.close()
        if manager.runtime is not None:
            await manager.runtime.stop()
        verifier.close()


@contextlib.asynccontextmanager
async def bootstrapped_node(
    config: NodeConfig, *, name: str = "c1.example.com", admin: tuple[str, str] = ADMIN
) -> AsyncIterator[Node]:
    """A node that created cluster `name` (admin `admin`) on a fresh in-memory store, with its
    runtime running (snapshot, liveness, voters, upkeep) as the agent's does."""
    async with running_node(config, backend=memory_backend()) as node:
        response = await node.client.post(
            "/v1/bootstrap/create_cluster", json=create_body(name, admin)
        )
        assert response.status_code == 200, response.text
        status = await node.wait_state("completed", "error", headers=basic(*admin))
        assert status["state"] == "completed", status
        yield node
