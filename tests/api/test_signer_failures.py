"""A node whose certificate signer cannot work (security/signing.py) says so and changes nothing:
the signer here is a real child process that dies on every request."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cnm.cluster import model
from cnm.cluster.license import LicenseTerms, generate_key_pair, issue_license, load_private_key
from cnm.cluster.records import NodeRecord
from cnm.security import signing
from harness.agents import basic
from harness.api_node import bootstrapped_node, memory_backend, node_config, running_node
from harness.bodies import ADMIN, create_body
from harness.inprocess import Member, join_member, member_node

DIES = "import sys, os; sys.stdin.buffer.readline(); os._exit(3)"


def use_signer(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> signing.Signer:
    """Make the process's signer one whose children run `command` (until the test ends or
    `monkeypatch.undo()`)."""
    signer = signing.Signer(command=command)
    monkeypatch.setattr(signing, "shared", lambda: signer)
    return signer


async def test_put_license_without_a_signer_is_a_503_and_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = generate_key_pair()
    config = node_config(tmp_path, license_public_keys=[public.decode()])
    async with bootstrapped_node(config) as node:
        headers = basic(*ADMIN)
        before = (await node.client.get("/v1/license", headers=headers)).json()
        now = datetime.now(UTC).replace(microsecond=0)
        terms = LicenseTerms(
            owner="Acme",
            cluster_name="c1.example.com",
            activation_date=now - timedelta(days=1),
            expiration_date=now + timedelta(days=30),
            shards_limit=10,
            nodes_limit=3,
            features=(),
        )
        text = issue_license(load_private_key(private), terms)
        use_signer(monkeypatch, [sys.executable, "-c", DIES])
        response = await node.client.put("/v1/license", json={"license": text}, headers=headers)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["error_code"] == "signer_unavailable"
        assert "exited twice before answering" in body["description"]
        assert (await node.client.get("/v1/license", headers=headers)).json() == before
        monkeypatch.undo()
        installed = await node.client.put("/v1/license", json={"license": text}, headers=headers)
        assert installed.status_code == 200, installed.text


async def test_create_without_a_signer_ends_in_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_signer(monkeypatch, [sys.executable, "-c", DIES])
    async with running_node(node_config(tmp_path), backend=memory_backend()) as node:
        response = await node.client.post("/v1/bootstrap/create_cluster", json=create_body())
        assert response.status_code == 200, response.text
        status = await node.wait_state("completed", "error")
        assert status["state"] == "error", status
        details = status["error_details"]
        assert "certificate signer" in details["message"], status
        assert details["phase"] == "certificates" and details["retryable"] is True, status
        monkeypatch.undo()
        # The same request again, once the signer works: nothing of the failed attempt is left
        # in the way.
        again = await node.client.post("/v1/bootstrap/create_cluster", json=create_body())
        assert again.status_code == 200, again.text
        status = await node.wait_state("completed", "error", headers=basic(*ADMIN))
        assert status["state"] == "completed", status


async def node_uids(member: Member) -> list[int]:
    """The uids of the node records in the member's store (not its snapshot, which may lag)."""
    records, _ = await member.store.get_prefix(model.NODES_PREFIX)
    return sorted(NodeRecord.decode(kv.value).uid for kv in records)


def signer_dying_first(count_file: Path, starts: int) -> list[str]:
    """A signer command whose first `starts` children die at once (counted in `count_file`),
    and whose later ones are the real signer."""
    code = (
        "import os, sys\n"
        "path = sys.argv[1]\n"
        "seen = int(open(path).read()) if os.path.exists(path) else 0\n"
        "open(path, 'w').write(str(seen + 1))\n"
        "if seen < int(sys.argv[2]):\n"
        "    os._exit(3)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'cnm.security.signer_process',"
        " '--idle', '10'])\n"
    )
    return [sys.executable, "-c", code, str(count_file), str(starts)]


async def test_a_join_asks_again_while_the_member_answers_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Three dying starts: whatever the order of the warm start and the admission, the first
    # admission gets a 503 (its signer died twice) and the second is answered.
    caplog.set_level(logging.INFO, logger="cnm.bootstrap.join")
    count = tmp_path / "starts"
    flaky = use_signer(monkeypatch, signer_dying_first(count, 3))
    async with member_node(tmp_path) as member:
        status = await join_member(tmp_path, member, retry_time=0, max_retries=3)
        assert status["state"] == "completed", status
        # The admission asked again was the same one: node 2, no uid spent on the refusal.
        assert await node_uids(member) == [1, 2]
    flaky.close()
    assert int(count.read_text()) == 4
    retries = [r for r in caplog.records if "asking again" in r.getMessage()]
    assert len(retries) == 1
    assert "cannot admit nodes right now" in retries[0].getMessage()


async def test_a_join_gives_up_after_max_retries_naming_the_member_s_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_signer(monkeypatch, [sys.executable, "-c", DIES])
    async with member_node(tmp_path) as member:
        status = await join_member(tmp_path, member, retry_time=0, max_retries=2)
        assert status["state"] == "error", status
        assert status["error_code"] == "connect_error", status
        message = status["error_details"]["message"]
        assert "cannot admit nodes right now" in message and "certificate signer" in message
        # The member asks its signer before it writes anything: no node 2 was admitted.
        assert await node_uids(member) == [1]
