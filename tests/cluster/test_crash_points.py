"""The crash walk: every fault point of cnm.failpoints, crashed on real agents and recovered.

For each point the agent that reaches it runs with `CNM_FAILPOINTS=<point>=crash`, the step is
driven until the agent dies there (SIGKILL, its etcd child with it), the agent is started again
without the fault, and then:
- its bootstrap status is `completed`, or `error` with `error_details.retryable`;
- the retried request (when it ended in `error`) completes, and no node was added twice;
- etcd's member list and the node records agree: every member belongs to a node record (by its
  peer address), every record that says voter or learner has its member (after the cluster's own
  healing, for voter promotion).
`test_every_fault_point_is_listed_and_walked` greps src/ for `failpoint("...")` so a new step
with a point and no walk fails here.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from cnm.failpoints import FAILPOINTS
from harness import bodies
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN
from harness.polling import eventually

SRC = Path(__file__).resolve().parents[2] / "src" / "cnm"
CALL = re.compile(r"""failpoint\(\s*["']([a-z0-9_.]+)["']\s*\)""")

# Which side of which step each point's prefix interrupts (the walk below for each).
KINDS = {
    "create": "create",
    "join": "joiner",
    "member": "member",
    "voter": "voter",
    "replace": "replace",
    "recover": "recover",
    "remove": "remove",
    "leave": "leave",
    "heal": "heal",
}
# Points whose recovery needs voter healing / ghost cleanup that is not built yet (issue 9).
NEEDS_HEALING: dict[str, str] = {}


def crash_env(point: str) -> dict[str, str]:
    return {"CNM_FAILPOINTS": f"{point}=crash"}


def create(agent: Agent) -> dict[str, Any]:
    response = agent.post("/v1/bootstrap/create_cluster", bodies.create_body("crash.example.com"))
    assert response.status_code == 200, response.text
    return agent.wait_state("completed", "error", auth=ADMIN, timeout=60)


def join(agent: Agent, member: Agent, **extra: Any) -> dict[str, Any]:
    response = agent.post("/v1/bootstrap/join_cluster", bodies.join_body([member.addr], **extra))
    assert response.status_code == 200, response.text
    return agent.wait_state("completed", "error", auth=ADMIN, timeout=60)


def completed(status: dict[str, Any]) -> dict[str, Any]:
    assert status["bootstrap_status"]["state"] == "completed", status
    return status


def wait_crashed(agent: Agent, point: str, timeout: float = 90.0) -> None:
    """The agent died by SIGKILL at `point`, and its etcd (if any) died with it."""
    assert agent.process is not None
    agent.process.wait(timeout)
    assert agent.process.returncode == -9, (agent.process.returncode, agent.log()[-2000:])
    assert f"failpoint {point}: crash" in agent.log()
    eventually(lambda: not agent.etcd_pids(), timeout=10, message="its etcd died with it")


def restart(agent: Agent) -> None:
    agent.env = {}
    agent.start()


def recovered_or_retry(agent: Agent, retry: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """After the restart: completed, or a retryable error whose retry completes."""
    status = agent.wait_state("completed", "error", auth=ADMIN, timeout=60)
    bootstrap = status["bootstrap_status"]
    if bootstrap["state"] == "error":
        details = bootstrap.get("error_details") or {}
        assert details.get("retryable") is True, status
        status = retry()
    return completed(status)


def store_members(agent: Agent) -> list[dict[str, Any]]:
    """etcd's member list, read from `agent`'s etcd with the node's own certificate."""
    import ssl

    import httpx

    tls = agent.layout.cluster_tls
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(*tls.store_client_files())
    response = httpx.post(
        f"https://{agent.addr}:2379/v3/cluster/member/list", json={}, verify=context, timeout=5.0
    )
    members: list[dict[str, Any]] = response.json()["members"]
    return members


def disagreement(voter: Agent) -> str | None:
    """How etcd's members and the node records disagree, or None when they agree."""
    nodes = voter.get("/v1/nodes", auth=ADMIN).json()
    members = store_members(voter)
    addrs = {n["addr"] for n in nodes}
    member_hosts = {urlsplit(u).hostname for m in members for u in m.get("peerURLs", [])}
    orphans = member_hosts - addrs
    if orphans:
        return f"etcd members without a node record: {sorted(map(str, orphans))}"
    for node in nodes:
        role = node.get("store_role")
        if role in ("voter", "learner") and node["addr"] not in member_hosts:
            return f"node {node['uid']} says {role} but etcd has no member for it"
        if role == "voter":
            member = next(
                m for m in members if node["addr"] in {urlsplit(u).hostname for u in m["peerURLs"]}
            )
            if member.get("isLearner"):
                return f"node {node['uid']} says voter but its etcd member is a learner"
    return None


def assert_consistent(voter: Agent, timeout: float = 10.0) -> None:
    """etcd's members and the node records agree within `timeout` (the last disagreement is
    reported otherwise)."""

    def agree() -> bool:
        problem = disagreement(voter)
        assert problem is None, problem
        return True

    eventually(agree, timeout=timeout, interval=0.2, message="etcd members and records agree")


def node_uids(agent: Agent) -> list[int]:
    return [n["uid"] for n in agent.get("/v1/nodes", auth=ADMIN).json()]


def walk_create(agents: AgentFactory, point: str) -> None:
    agent = agents.start(env=crash_env(point))
    response = agent.post("/v1/bootstrap/create_cluster", bodies.create_body("crash.example.com"))
    assert response.status_code == 200
    wait_crashed(agent, point)
    restart(agent)
    recovered_or_retry(agent, lambda: create(agent))
    assert node_uids(agent) == [1]
    assert_consistent(agent)


def walk_joiner(agents: AgentFactory, point: str) -> None:
    first = agents.start()
    completed(create(first))
    joiner = agents.start(env=crash_env(point))
    response = joiner.post("/v1/bootstrap/join_cluster", bodies.join_body([first.addr]))
    assert response.status_code == 200
    wait_crashed(joiner, point)
    restart(joiner)
    status = recovered_or_retry(joiner, lambda: join(joiner, first))
    # The retry was admitted with the uid of the first attempt: no node twice.
    assert status["local_node_info"]["uid"] == "2", status
    eventually(lambda: node_uids(first) == [1, 2], timeout=20, message="nodes [1, 2]")
    assert_consistent(first)


def walk_member(agents: AgentFactory, point: str) -> None:
    first = agents.start(env=crash_env(point))
    completed(create(first))
    joiner = agents.start()
    response = joiner.post("/v1/bootstrap/join_cluster", bodies.join_body([first.addr]))
    assert response.status_code == 200
    wait_crashed(first, point)
    status = joiner.wait_state("completed", "error", auth=ADMIN, timeout=60)
    restart(first)
    completed(first.wait_state("completed", "error", auth=ADMIN, timeout=60))
    if status["bootstrap_status"]["state"] == "error":
        assert status["bootstrap_status"]["error_details"]["retryable"] is True, status
        status = join(joiner, first)
    assert completed(status)["local_node_info"]["uid"] == "2", status
    eventually(lambda: node_uids(first) == [1, 2], timeout=20, message="nodes [1, 2]")
    assert_consistent(first)


def walk_voter(agents: AgentFactory, point: str) -> None:
    first = agents.start()
    completed(create(first))
    # Node 2 is the first node of a 3-node cluster to become a voter (lowest uid).
    second = agents.start(env=crash_env(point))
    completed(join(second, first))
    third = agents.start()
    completed(join(third, first))
    wait_crashed(second, point)
    restart(second)
    completed(second.wait_state("completed", "error", auth=ADMIN, timeout=60))

    def three_voters() -> bool:
        roles = [n.get("store_role") for n in first.get("/v1/nodes", auth=ADMIN).json()]
        assert roles == ["voter"] * 3, roles
        return True

    eventually(three_voters, timeout=120, interval=0.5, message="three voters")
    assert_consistent(first, timeout=30)
    assert node_uids(first) == [1, 2, 3]


def node_of(agent: Agent, uid: int) -> dict[str, Any] | None:
    return next((n for n in agent.get("/v1/nodes", auth=ADMIN).json() if n["uid"] == uid), None)


def two_nodes(first: Agent, second: Agent) -> None:
    """`first` creates, `second` joins: one store voter (node 1) and one client (node 2)."""
    completed(create(first))
    completed(join(second, first))


def walk_replace(agents: AgentFactory, point: str) -> None:
    # The admitting member (the only voter) crashes while it gives dead node 2's uid away.
    first, second = agents.start(env=crash_env(point)), agents.start()
    two_nodes(first, second)
    second.kill9()
    eventually(
        lambda: (node_of(first, 2) or {}).get("status") == "down", timeout=60, message="2 down"
    )
    third = agents.start()
    replacement = {"node": {"identity": {"uid": 2}}}
    body = bodies.join_body([first.addr], **replacement)
    assert third.post("/v1/bootstrap/join_cluster", body).status_code == 200
    wait_crashed(first, point)
    status = third.wait_state("completed", "error", auth=ADMIN, timeout=60)
    restart(first)
    completed(first.wait_state("completed", "error", auth=ADMIN, timeout=60))
    if status["bootstrap_status"]["state"] == "error":
        assert status["bootstrap_status"]["error_details"]["retryable"] is True, status
        status = join(third, first, **replacement)
    assert completed(status)["local_node_info"]["uid"] == "2", status
    eventually(lambda: node_uids(first) == [1, 2], timeout=20, message="nodes [1, 2]")
    assert (node_of(first, 2) or {}).get("addr") == third.addr
    assert_consistent(first)


def walk_recover(agents: AgentFactory, point: str) -> None:
    first = agents.start()
    completed(create(first))
    taken = httpx.post(first.http_url + "/v1/cluster/backup", headers=basic(*ADMIN), timeout=10)
    assert taken.status_code == 200, taken.text
    kept = agents.base / "kept-snapshot.json"
    shutil.copyfile(taken.json()["file"], kept)
    first.kill9()
    shutil.rmtree(first.data_dir)
    fresh = agents.start(env=crash_env(point))
    body = {"action": "recover_cluster", "recovery_filename": str(kept)}

    def recover() -> dict[str, Any]:
        assert fresh.post("/v1/bootstrap/recover_cluster", body).status_code == 200
        return fresh.wait_state("completed", "error", auth=ADMIN, timeout=60)

    assert fresh.post("/v1/bootstrap/recover_cluster", body).status_code == 200
    wait_crashed(fresh, point)
    restart(fresh)
    status = recovered_or_retry(fresh, recover)
    assert status["local_node_info"]["uid"] == "1", status
    assert node_uids(fresh) == [1]
    assert (node_of(fresh, 1) or {}).get("addr") == fresh.addr
    assert_consistent(fresh)


def remove(agent: Agent, uid: int) -> httpx.Response:
    # A removal may wait for a membership change in progress: a generous timeout.
    url = f"{agent.http_url}/v1/nodes/{uid}/actions/remove"
    return httpx.post(url, headers=basic(*ADMIN), timeout=60)


def walk_remove(agents: AgentFactory, point: str) -> None:
    first, second = agents.start(env=crash_env(point)), agents.start()
    two_nodes(first, second)
    with contextlib.suppress(httpx.TransportError):  # the acting node dies under the request
        remove(first, 2)
    wait_crashed(first, point)
    restart(first)
    completed(first.wait_state("completed", "error", auth=ADMIN, timeout=60))
    # The retried removal succeeds, or says the node is already gone.
    retried = remove(first, 2)
    assert retried.status_code in (200, 404), retried.text
    assert node_uids(first) == [1]
    assert_consistent(first)
    # The removed node learns it and leaves: idle, ready to join again.
    second.wait_state("idle", timeout=60)


def walk_leave(agents: AgentFactory, point: str) -> None:
    first, second = agents.start(), agents.start(env=crash_env(point))
    two_nodes(first, second)
    assert remove(first, 2).status_code == 200
    wait_crashed(second, point)
    restart(second)
    # Back up, it finishes leaving (or had finished): idle, and no cluster data left behind.
    second.wait_state("idle", timeout=60)
    assert not second.layout.cluster_tls.directory.exists()
    assert node_uids(first) == [1]
    assert_consistent(first)
    # It can join again, as a new node.
    assert completed(join(second, first))["local_node_info"]["uid"] == "3"


def voters_of(agent: Agent) -> list[dict[str, Any]]:
    return [n for n in agent.get("/v1/nodes", auth=ADMIN).json() if n["store_role"] == "voter"]


def walk_heal(agents: AgentFactory, point: str) -> None:
    # Node 1, the lowest live voter, heals; it dies while giving dead node 3's seat to node 4.
    first = agents.start(env=crash_env(point))
    completed(create(first))
    others = [agents.start() for _ in range(3)]
    for agent in others:
        completed(join(agent, first))
    eventually(lambda: len(voters_of(first)) == 3, timeout=120, message="three voters")
    assert_consistent(first, timeout=30)
    response = httpx.put(
        first.http_url + "/v1/cluster/policy",
        json={"voter_replace_after": 2},
        headers=basic(*ADMIN),
        timeout=5,
    )
    assert response.status_code == 200, response.text
    victim = next(a for a in others if a.addr in {v["addr"] for v in voters_of(first)})
    victim_uid = next(v["uid"] for v in voters_of(first) if v["addr"] == victim.addr)
    victim.kill9()
    wait_crashed(first, point)
    restart(first)
    completed(first.wait_state("completed", "error", auth=ADMIN, timeout=60))

    def healed() -> bool:
        current = voters_of(first)
        uids = [v["uid"] for v in current]
        assert len(current) == 3 and victim_uid not in uids, uids
        assert all(v["status"] == "active" for v in current), current
        return True

    eventually(healed, timeout=120, interval=0.5, message="three live voters again")
    assert_consistent(first, timeout=30)


WALKS = {
    "create": walk_create,
    "joiner": walk_joiner,
    "member": walk_member,
    "voter": walk_voter,
    "replace": walk_replace,
    "recover": walk_recover,
    "remove": walk_remove,
    "leave": walk_leave,
    "heal": walk_heal,
}


def walk_params() -> list[Any]:
    params = []
    for point in sorted(FAILPOINTS):
        marks = []
        if point in NEEDS_HEALING:
            marks.append(pytest.mark.xfail(strict=False, reason=NEEDS_HEALING[point]))
        params.append(pytest.param(point, marks=marks, id=point))
    return params


@pytest.mark.parametrize("point", walk_params())
def test_crash_at_fault_point_recovers(agents: AgentFactory, point: str) -> None:
    WALKS[KINDS[point.split(".", 1)[0]]](agents, point)


def test_every_fault_point_is_listed_and_walked() -> None:
    found = {name for path in SRC.rglob("*.py") for name in CALL.findall(path.read_text())}
    print(f"fault points in src/: {len(found)}: {', '.join(sorted(found))}")
    assert found, "no failpoint(...) call found in src/"
    assert found - set(FAILPOINTS) == set(), "fault points missing from cnm.failpoints.FAILPOINTS"
    assert set(FAILPOINTS) - found == set(), "FAILPOINTS lists points no code calls"
    walked = {p.values[0] for p in walk_params()}
    assert found <= walked
    assert all(name.split(".", 1)[0] in KINDS for name in found), "a point without a walk kind"
