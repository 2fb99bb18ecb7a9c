"""What a node can say and check while its cluster store does not serve (quorum lost).

Two things an operator needs then, both from the node's own data dir, never from the store:
- `LocalUsers`: the last users the node knew (their records with the argon2id verifiers, never a
  password), kept in `DATA_DIR/users.json` (mode 0600) and refreshed whenever the snapshot's
  users change, so that the node's own `GET /v1/bootstrap` stays readable with the credentials
  of a cluster user.
- `store_unavailable(...)`: the 503 `store_unavailable` that says how many of the known voters
  are unreachable (a TCP connect to each voter's client URL, answered in well under a second and
  cached briefly) and points at `recover_cluster` when they may never come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

from cnm.cluster import model
from cnm.cluster.records import StoreRole, UserRecord
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.errors import StoreUnavailable
from cnm.node.data_dir import DataDir
from cnm.node.local_state import LocalState, atomic_write_bytes, read_json_quiet

PROBE_TIMEOUT = 0.5
PROBE_CACHE_SECONDS = 2.0


def users_file(data_dir: Path) -> Path:
    return DataDir(data_dir).users_file


class LocalUsers:
    """The users a node knew last, by login (email or name, case-insensitive)."""

    def __init__(self, users: list[UserRecord]) -> None:
        self._users = users

    def user_by_login(self, login: str) -> UserRecord | None:
        folded = login.casefold()
        for user in self._users:
            if user.email.casefold() == folded or (user.name and user.name.casefold() == folded):
                return user
        return None

    @classmethod
    def load(cls, data_dir: Path) -> LocalUsers | None:
        document = read_json_quiet(users_file(data_dir))
        if not isinstance(document, dict) or not isinstance(document.get("users"), list):
            return None
        users = []
        for item in document["users"]:
            with contextlib.suppress(ValueError):
                users.append(UserRecord.model_validate(item))
        return cls(users)


def save_local_users(data_dir: Path, snapshot: ClusterSnapshot) -> None:
    documents = [user.document() for user in snapshot.users()]
    data = json.dumps({"users": documents}, sort_keys=True).encode()
    atomic_write_bytes(users_file(data_dir), data, mode=0o600)


def users_changed(key: str) -> bool:
    return key.startswith((model.USERS_PREFIX, model.USER_LOGIN_PREFIX))


def known_voters(snapshot: ClusterSnapshot, local: LocalState) -> list[str]:
    """The client URLs of the store's voters: from the snapshot when it has them, else the
    endpoints the node saved (they are the voters' URLs as last seen)."""
    urls = [
        n.store_client_url
        for n in snapshot.nodes()
        if n.store_role is StoreRole.VOTER and n.store_client_url
    ]
    return sorted(set(urls or local.store_endpoints))


async def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return False
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class QuorumReporter:
    """Builds the 503 of a node whose store does not serve; probes cached for a few seconds."""

    def __init__(self) -> None:
        self._cached: tuple[float, tuple[str, ...], list[str]] | None = None

    async def missing(self, voters: list[str]) -> list[str]:
        now = time.monotonic()
        cached = self._cached
        if cached and cached[1] == tuple(voters) and now - cached[0] < PROBE_CACHE_SECONDS:
            return cached[2]
        answers = await asyncio.gather(*(_reachable(url) for url in voters))
        missing = [url for url, ok in zip(voters, answers, strict=True) if not ok]
        self._cached = (now, tuple(voters), missing)
        return missing

    async def store_unavailable(
        self, snapshot: ClusterSnapshot, local: LocalState, cause: StoreUnavailable
    ) -> StoreUnavailable:
        voters = known_voters(snapshot, local)
        missing = await self.missing(voters)
        quorum = len(voters) // 2 + 1
        if not voters or len(voters) - len(missing) >= quorum:
            return cause  # enough voters answer: the store is starting or electing, not lost
        return StoreUnavailable(
            f"the cluster store has no quorum: {len(missing)} of {len(voters)} voters are "
            f"missing ({', '.join(missing)}; {quorum} are needed); it heals by itself when "
            "enough of them come back. If they are lost for good, recover the cluster from a "
            "store snapshot with POST /v1/bootstrap/recover_cluster on a fresh node",
            voters=len(voters),
            missing_voters=missing,
            quorum=quorum,
        )
