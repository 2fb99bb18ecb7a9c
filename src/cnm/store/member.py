"""The `StoreMember` contract: this node's own member of the cluster store, as a child process.

The runtime starts it, waits until it serves, restarts it when it exits and stops it on shutdown;
`voters.py` starts one when this node becomes a voter. The etcd implementation is
`cnm.store.etcd_process.EtcdProcess`; `cnm.store.memory.MemoryMember` stands in for it in tests
that run a node on the in-memory store. A member is not restartable: `again()` makes the next one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from cnm.store.base import Store


class MemberExit(StrEnum):
    """Why a member exited, as the store layer reads it (etcd's messages are read only in
    store/): `REMOVED` means the store removed this member for good, so restarting it is
    useless and its data is stale; anything else is `FAILED` (worth a restart)."""

    REMOVED = "removed"
    FAILED = "failed"


class StoreMember(Protocol):
    @property
    def running(self) -> bool:
        """True between a successful `start` and the member's exit."""
        ...

    async def start(self) -> None:
        """Start the member; returns once it is spawned, not once it serves (see `wait_ready`).
        Raises `OSError` when it cannot be spawned at all."""
        ...

    async def wait_ready(self, store: Store, *, timeout: float = 15.0) -> None:
        """Return once `store` (a client of this member) serves linearizable reads. Raises
        `StoreError` when the member exits first, `StoreUnavailable` after `timeout` seconds."""
        ...

    async def wait(self) -> int:
        """Wait for the member to exit; its exit code."""
        ...

    async def stop(self) -> None:
        """Stop the member (in order, then by force). Stopping one that is not running is fine."""
        ...

    def log_tail(self, lines: int = 5) -> str:
        """The end of the member's own log, one line, for error messages."""
        ...

    def exit_condition(self) -> MemberExit:
        """Why the member exited (call after `wait` returned or `start`/`wait_ready` failed)."""
        ...

    def again(self) -> StoreMember:
        """A new, not yet started member with the same settings: to restart after an exit."""
        ...
