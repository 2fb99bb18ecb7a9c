"""Store voters that heal, on real agents and real etcd: a dead voter replaced, the old node back
as a client, a ghost record cleaned up, the store's leader killed during joins."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import threading
import time
from typing import Any

import httpx

from harness import bodies, etcd_gateway
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

REPLACE_AFTER = 3


def create(agent: Agent) -> None:
    assert agent.post("/v1/bootstrap/create_cluster", create_body("heal.example.com")).status_code
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=30)
    assert status["bootstrap_status"]["state"] == "completed", status


def start_join(agent: Agent, member: Agent) -> None:
    response = agent.post("/v1/bootstrap/join_cluster", bodies.join_body([member.addr]))
    assert response.status_code == 200, response.text


def join(agent: Agent, member: Agent) -> dict[str, Any]:
    start_join(agent, member)
    return agent.wait_state("completed", "error", auth=ADMIN, timeout=60)


def etcd(agent: Agent, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """etcd's JSON gateway on the agent's member, as the agent's own store user."""
    response = etcd_gateway.post(agent.addr, agent.layout.cluster_tls, path, body)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def nodes(agent: Agent) -> list[dict[str, Any]]:
    response = agent.get("/v1/nodes", auth=ADMIN)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def voters(agent: Agent) -> list[dict[str, Any]]:
    return [n for n in nodes(agent) if n.get("store_role") == "voter"]


def members_match_voters(agent: Agent) -> bool:
    """The etcd member list is exactly the voter records: no learner, no ghost member."""
    members = etcd(agent, "/v3/cluster/member/list", {})["members"]
    if any(m.get("isLearner") for m in members):
        return False
    peers = sorted(u for m in members for u in m["peerURLs"])
    return peers == sorted(str(n["store_peer_url"]) for n in voters(agent))


def leader_addr(agents: list[Agent]) -> str:
    status = etcd(agents[0], "/v3/maintenance/status", {})
    members = etcd(agents[0], "/v3/cluster/member/list", {})["members"]
    leader = next(m for m in members if m["ID"] == status["leader"])
    return str(httpx.URL(leader["peerURLs"][0]).host)


def set_policy(agent: Agent, **policy: Any) -> None:
    response = httpx.put(
        agent.http_url + "/v1/cluster/policy", json=policy, headers=basic(*ADMIN), timeout=5
    )
    assert response.status_code == 200, response.text


def etcd_starts(agent: Agent) -> int:
    return agent.log().count("etcd member node-")  # "etcd member node-N started, pid P"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class WriteProbe:
    """Writes to the store through the API every 0.2 s until stopped; records failures."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.failures: list[str] = []
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        length = 8
        while not self._stop.wait(0.2):
            length = 9 if length == 8 else 8
            try:
                response = httpx.put(
                    self.agent.http_url + "/v1/cluster",
                    json={"password_min_length": length},
                    headers=basic(*ADMIN),
                    timeout=10,
                )
                self.writes += 1
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> WriteProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_dead_voter_is_replaced_and_comes_back_as_a_client(agents: AgentFactory) -> None:
    first, second, third, fourth = (agents.start() for _ in range(4))
    create(first)
    for agent in (second, third, fourth):
        assert join(agent, first)["bootstrap_status"]["state"] == "completed"
    eventually(lambda: len(voters(first)) == 3, timeout=60, message="three voters")
    eventually(lambda: members_match_voters(first), timeout=30, message="members == voters")
    set_policy(first, voter_replace_after=REPLACE_AFTER)
    policy = first.get("/v1/cluster/policy", auth=ADMIN).json()
    assert policy["voter_replace_after"] == REPLACE_AFTER

    # A ghost: a record admitted (`joining`) whose joiner never completed. It is not counted
    # (four real nodes want three voters, not five) and is cleaned up after its grace.
    ghost = {"uid": 99, "addr": "127.0.99.99", "store_role": "client", "joining": True}
    etcd(first, "/v3/kv/put", {"key": b64("/cnm/nodes/99"), "value": b64(json.dumps(ghost))})
    etcd(
        first,
        "/v3/kv/put",
        {"key": b64("/cnm/node-keys/" + "ab" * 16), "value": b64(json.dumps({"uid": 99}))},
    )
    eventually(
        lambda: 99 not in [n["uid"] for n in nodes(first)],
        timeout=2 * REPLACE_AFTER + 30,
        message="ghost record removed",
    )
    assert etcd(first, "/v3/kv/range", {"key": b64("/cnm/node-keys/" + "ab" * 16)}).get(
        "count", "0"
    ) in ("0", 0)
    assert "removed node record 99" in "".join(a.log() for a in (first, second, third, fourth))
    assert len(voters(first)) == 3

    # Kill -9 a voter that is not the store's leader (the point is quorum, not an election).
    by_addr = {a.addr: a for a in (first, second, third, fourth)}
    leader = leader_addr([first])
    victim_record = next(v for v in voters(first) if v["addr"] != leader)
    victim = by_addr[victim_record["addr"]]
    observer = next(a for a in (first, second, third, fourth) if a is not victim)
    starts_before = etcd_starts(victim)
    with WriteProbe(observer) as probe:
        victim.kill9()
        eventually(
            lambda: any(
                n["uid"] == victim_record["uid"] and n["status"] == "down" for n in nodes(observer)
            ),
            timeout=10,
            message="the victim down",
        )
        down_at = time.monotonic()

        def replaced() -> bool:
            current = voters(observer)
            return (
                len(current) == 3
                and victim_record["uid"] not in [v["uid"] for v in current]
                and all(v["status"] == "active" for v in current)
                and members_match_voters(observer)
            )

        eventually(replaced, timeout=REPLACE_AFTER + 10, message="the dead voter replaced")
        replaced_in = time.monotonic() - down_at
    assert probe.writes > 5
    assert probe.failures == [], probe.failures  # the store never lost its quorum
    assert replaced_in < REPLACE_AFTER + 10

    # The old node comes back: a store client, cleanly, without starting etcd at all.
    victim.start()
    victim.wait_state("completed", auth=ADMIN, timeout=30)

    def back_as_client() -> bool:
        record = next(n for n in nodes(observer) if n["uid"] == victim_record["uid"])
        return record["status"] == "active" and record.get("store_role") == "client"

    eventually(back_as_client, timeout=30, message="the old voter back as a client")
    assert not victim.layout.local_state_file.read_text().count('"runs_store_member": true')
    assert victim.etcd_pids() == []
    assert etcd_starts(victim) == starts_before
    assert "store_member_gone" in victim.log() or "no longer has a store member" in victim.log()
    # The cluster settles on its three voters and the member list has no stray learner.
    eventually(lambda: members_match_voters(observer), timeout=20, message="members == voters")
    assert len(voters(observer)) == 3
    assert victim.get("/v1/cluster/check", auth=ADMIN).status_code == 200


RETRYABLE = {"connect_error", "internal_error", "store_unavailable", "timeout"}


def test_leader_killed_during_five_joins(agents: AgentFactory) -> None:
    trio = [agents.start() for _ in range(3)]
    create(trio[0])
    for agent in trio[1:]:
        assert join(agent, trio[0])["bootstrap_status"]["state"] == "completed"
    eventually(lambda: len(voters(trio[0])) == 3, timeout=60, message="three voters")
    leader = next(a for a in trio if a.addr == leader_addr(trio))
    member = next(a for a in trio if a is not leader)
    joiners = [agents.start() for _ in range(5)]

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda j: start_join(j, member), joiners))
    leader.kill9()
    # While the store elects a new leader the API answers (200 or a JSON 503), never hangs.
    started = time.monotonic()
    response = member.get("/v1/nodes", auth=ADMIN)
    assert time.monotonic() - started < 6
    assert response.status_code in (200, 503), response.text
    if response.status_code == 503:
        assert response.json()["error_code"] == "store_unavailable"

    outcomes = [j.wait_state("completed", "error", auth=ADMIN, timeout=90) for j in joiners]
    for joiner, outcome in zip(joiners, outcomes, strict=True):
        state = outcome["bootstrap_status"]
        if state["state"] == "error":
            assert state.get("error_code") in RETRYABLE, state
            joiner.stop()
            joiner.start()
            status = join(joiner, member)
            assert status["bootstrap_status"]["state"] == "completed", status
    listed = nodes(member)
    uids = [n["uid"] for n in listed]
    assert len(uids) == len(set(uids)) == 8
    addrs = [n["addr"] for n in listed]
    for joiner in joiners:
        assert addrs.count(joiner.addr) == 1
