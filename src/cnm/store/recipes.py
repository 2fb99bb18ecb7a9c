"""Sequences of store calls that cnm runs as one step: a learner added, a learner promoted, the
`initial-cluster` of a new member.

They use only the `Store` contract, so the product (cluster/membership.py, cluster/voters.py)
and the benchmarks' raw-store baselines (bench/) run the very same calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from cnm.errors import StoreError
from cnm.store.base import Member, Store

log = logging.getLogger(__name__)


class PromotionRefused(StoreError):
    """The caller's own rule forbids the promotion now (see `promote_learner`'s `refusal`)."""


async def add_learner(store: Store, peer_url: str) -> tuple[Member, bool]:
    """This peer URL's member, added as a learner unless an earlier attempt added it already.
    Returns (member, fresh): fresh when just added (its data directory must start empty).
    Removes first a learner left behind by someone else (the store allows one at a time).
    Raises `MembershipChangeRefused` when the store refuses the add (retry a transient one)."""
    members = await store.member_list()
    for member in members:
        if peer_url in member.peer_urls:
            return member, False
    for member in members:
        if member.is_learner:
            log.warning(
                "removing learner %s left by a node that died while becoming a voter",
                member.peer_urls,
            )
            await store.member_remove(member.id)
    added = await store.member_add([peer_url], learner=True)
    return added[0], True


async def promote_learner(
    store: Store,
    member: Member,
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
    refusal: Callable[[], str | None] | None = None,
) -> None:
    """Promote `member` once the store says it is in sync with the leader, asking every
    `interval` seconds. A voter already is: nothing to do. `refusal()`, asked right before every
    attempt, names the caller's reason not to promote now: then `PromotionRefused` is raised at
    once (the caller retries later, without holding anything meanwhile). Raises `StoreError`
    when it is not promoted within `timeout` seconds or `alive()` turns False (its process
    exited)."""
    if not member.is_learner:
        return
    deadline = time.monotonic() + timeout
    peer = member.peer_urls[0] if member.peer_urls else str(member.id)
    while True:
        refused = refusal() if refusal is not None else None
        if refused is not None:
            raise PromotionRefused(f"the store learner {peer} is not promoted yet: {refused}")
        if await store.member_promote(member.id):
            return
        if alive is not None and not alive():
            raise StoreError(f"the store learner {peer} exited before it was promoted")
        if time.monotonic() > deadline:
            raise StoreError(f"the store learner {peer} did not catch up within {timeout:.0f} s")
        await asyncio.sleep(interval)


def initial_cluster(members: Sequence[Member], *, peer_url: str, name: str) -> str:
    """etcd's `--initial-cluster` for the new member at `peer_url` called `name`: every member
    as `name=peer_url`. A member added but not started yet has no name in the list."""
    parts = []
    for member in members:
        member_name = name if peer_url in member.peer_urls else member.name
        if member_name and member.peer_urls:
            parts.append(f"{member_name}={member.peer_urls[0]}")
    return ",".join(parts)
