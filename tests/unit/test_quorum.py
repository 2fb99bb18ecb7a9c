"""cluster/quorum.py: the 503 of a store without quorum, and the local copy of the users."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

from cnm.cluster import model
from cnm.cluster.quorum import LocalUsers, QuorumReporter, save_local_users, users_file
from cnm.cluster.records import UserRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.errors import StoreUnavailable
from cnm.node.local_state import LocalState
from cnm.store.memory import MemoryStore


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def local_state(endpoints: list[str]) -> LocalState:
    return LocalState(
        cluster_uuid="u",
        cluster_name="c1.example.com",
        node_uid=1,
        store_endpoints=tuple(endpoints),
        runs_store_member=True,
        member_name="node-1",
        initial_cluster="",
        initial_cluster_state="new",
        cluster_token="u",
        persistent_path="/p",
        ephemeral_path="/e",
        bigstore_path=None,
        ccs_persistent_path="/p/ccs",
    )


async def test_the_503_names_the_missing_voters_only_when_quorum_is_lost() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    open_port = server.sockets[0].getsockname()[1]
    up = f"https://127.0.0.1:{open_port}"
    down = [f"https://127.0.0.1:{closed_port()}", f"https://127.0.0.1:{closed_port()}"]
    cause = StoreUnavailable("starting")
    snapshot = ClusterSnapshot(MemoryStore())
    try:
        lost = await QuorumReporter().store_unavailable(snapshot, local_state([up, *down]), cause)
        assert "2 of 3 voters are missing" in lost.message
        assert "recover_cluster" in lost.message
        assert lost.details == {"voters": 3, "missing_voters": sorted(down), "quorum": 2}
        # Two of three answer: the store is electing or starting, the cause stands.
        kept = await QuorumReporter().store_unavailable(
            snapshot, local_state([up, up.replace("127.0.0.1", "localhost"), down[0]]), cause
        )
        assert kept is cause
    finally:
        server.close()
        await server.wait_closed()


async def test_the_local_users_are_private_verifiers_found_by_email_or_name(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    user = UserRecord(uid=2, email="Ann@Example.com", name="ann", role="admin", password_hash="$x")
    await store.put(model.user_key(2), user.encode())
    snapshot = ClusterSnapshot(store)
    await snapshot.load()
    save_local_users(tmp_path, snapshot)
    assert stat.S_IMODE(users_file(tmp_path).stat().st_mode) == 0o600
    known = LocalUsers.load(tmp_path)
    assert known is not None
    assert known.user_by_login("ann@example.com") == user
    assert known.user_by_login("ANN") == user
    assert known.user_by_login("bob") is None
    assert LocalUsers.load(tmp_path / "elsewhere") is None
