"""The benchmarks' hand-made etcd cluster: the raw-etcd baselines of bench_heal, bench_repair and
join_voters, built with cnm's own launcher (`EtcdProcess`), store client and member recipes
(`cnm.store.recipes`), and nothing else of cnm.

One CA, one node certificate per address, member 1 started as a new one-member cluster; every
other member joins the way an operator does it with etcdctl: `add_learner` (a refused add is
retried while etcd calls it transient), start with `initial-cluster-state existing`, then
`promote_learner`, polled until etcd says the learner is in sync.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cnm.cluster.runtime import open_store
from cnm.errors import StoreError
from cnm.node.data_dir import ClusterTls
from cnm.security import node_certs, pki
from cnm.store.base import Member, MembershipChangeRefused
from cnm.store.etcd_process import EtcdMemberSpec, EtcdProcess
from cnm.store.recipes import add_learner, initial_cluster, promote_learner
from common import RunFailed, member_spec, node_tls, now

ADD_RETRY_INTERVAL = 0.1  # a refused member_add is retried this often
PROMOTE_INTERVAL = 0.05  # member_promote polling, as cnm's voters.py does


@dataclass
class GrowSteps:
    """When one member's steps happened (`now()` clock); None: it did not happen."""

    first_refusal: float | None = None  # the first add etcd refused (transient)
    add_sent: float = 0.0  # the add etcd accepted was sent
    added: float = 0.0  # ... and answered
    promoted: float = 0.0


class RawCluster:
    """Members on `addrs` (member N is `node-N` on the Nth address), files under `directory`.
    `customise` changes every member's spec (e.g. etcd's own default settings)."""

    def __init__(
        self,
        addrs: list[str],
        directory: Path,
        *,
        customise: Callable[[EtcdMemberSpec], EtcdMemberSpec] | None = None,
    ) -> None:
        ca = pki.make_ca("bench")
        token = str(uuid.uuid4())
        self.specs: list[EtcdMemberSpec] = []
        for number, addr in enumerate(addrs, start=1):
            tls = node_tls(
                directory / f"tls-{number}", ca, addr, node_certs.node_cert_sans(addr, [])
            )
            spec = member_spec(
                f"node-{number}",
                addr,
                tls,
                data_dir=directory / f"etcd-{number}",
                log_file=directory / f"etcd-{number}.log",
                initial_cluster="",
                initial_state="existing",
                token=token,
            )
            self.specs.append(customise(spec) if customise else spec)
        first = self.specs[0]
        self.specs[0] = replace(
            first, initial_cluster=f"node-1={first.peer_url}", initial_state="new"
        )
        self.processes: list[EtcdProcess] = []
        self.store = open_store((self.specs[0].client_url,), ClusterTls(directory / "tls-1"))

    async def start_first(self, timeout: float) -> None:
        """Member 1, a new one-member cluster, serving."""
        process = EtcdProcess("etcd", self.specs[0])
        self.processes.append(process)
        await process.start()
        await process.wait_ready(self.store, timeout=timeout)

    async def grow(self, spec: EtcdMemberSpec, deadline: float) -> tuple[EtcdProcess, GrowSteps]:
        """Add `spec`'s member as a learner, start it, promote it; by `deadline` (`now()`)."""
        steps = GrowSteps()
        added: Member
        while True:
            attempt = now()
            try:
                added, _ = await add_learner(self.store, spec.peer_url)
                break
            except MembershipChangeRefused as exc:
                if not exc.transient or now() > deadline:
                    raise RunFailed(f"member_add of {spec.name}: {exc.message}") from None
                if steps.first_refusal is None:
                    steps.first_refusal = attempt
                await asyncio.sleep(ADD_RETRY_INTERVAL)
        steps.add_sent, steps.added = attempt, now()
        members = await self.store.member_list()
        initial = initial_cluster(members, peer_url=spec.peer_url, name=spec.name)
        process = EtcdProcess("etcd", replace(spec, initial_cluster=initial))
        self.processes.append(process)
        await process.start()
        try:
            await promote_learner(
                self.store,
                added,
                timeout=max(deadline - now(), 0.0),
                interval=PROMOTE_INTERVAL,
                alive=lambda: process.running,
            )
        except StoreError as exc:
            raise RunFailed(
                f"{spec.name}: {exc.message}; its log ends: {process.log_tail()}"
            ) from None
        steps.promoted = now()
        return process, steps

    async def close(self) -> None:
        await self.store.close()
        # One at a time: stopped together, a leader tries to hand over to members that are
        # going away and EtcdProcess kills it after 3 s (the agents' own shutdown pays that).
        for process in self.processes:
            await process.stop()
