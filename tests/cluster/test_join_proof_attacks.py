"""The join's password proof against a machine in the middle, with a real member (issue 11 §2).

The attacker (tests/harness/fake_member.py: a real TLS server with its own CA) stands between a
joiner and a real agent: it hands the joiner its own CA (the joiner pins nothing: trust on first
use) and relays the proof's messages to the real member. The proof is bound to the certificate
each side saw, so the real member refuses it (channel binding mismatch), and rewriting the
binding to the real member's does not help either: the proof was computed over the attacker's.
Nothing the joiner sent gets the attacker a token, and no password crosses the wire.
"""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import httpx
import pytest

from cnm.bootstrap.member_link import connect
from cnm.errors import AccessDenied, BootstrapFailure, ConnectError
from cnm.security import join_proof
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body
from harness.fake_member import FakeMember, fake_member


def create(agent: Agent) -> None:
    assert (
        agent.post("/v1/bootstrap/create_cluster", create_body("mitm.example.com")).status_code
        == 200
    )
    status = agent.wait_state("completed", "error", auth=ADMIN)
    assert status["bootstrap_status"]["state"] == "completed", status


def served_binding(agent: Agent) -> bytes:
    pem = ssl.get_server_certificate((agent.addr, 9443))
    return join_proof.tls_server_end_point(ssl.PEM_cert_to_DER_cert(pem))


@pytest.mark.parametrize("rewrite_binding", [False, True], ids=["relayed", "binding-rewritten"])
async def test_a_relay_in_the_middle_cannot_complete_the_proof(
    agents: AgentFactory, tmp_path: Path, rewrite_binding: bool
) -> None:
    real = agents.start()
    create(real)
    real_binding = served_binding(real)
    holder: list[FakeMember] = []
    relayed: list[tuple[str, int, dict[str, object]]] = []

    async def handler(method: str, path: str, body: bytes) -> tuple[int, object]:
        if path == "/v1/join/ca":
            ca = holder[0].attacker_ca.cert_pem.decode()
            return 200, {"ca_pem": ca, "ca_fingerprint": "x"}
        if path.startswith("/v1/join/auth/"):
            document = json.loads(body)
            if rewrite_binding and "channel_binding" in document:
                document["channel_binding"] = base64.b64encode(real_binding).decode()
            async with httpx.AsyncClient(verify=False, timeout=30) as client:
                answer = await client.post(real.https_url + path, json=document)
            relayed.append((path, answer.status_code, answer.json()))
            return answer.status_code, answer.json()
        return 200, {}

    async with fake_member(tmp_path / "attacker", handler) as member:
        holder.append(member)
        link = await connect(
            [member.address],
            default_port=member.port,
            pinned_fingerprint=None,
            local_address=None,
            attempts=1,
            retry_time=0.0,
        )
        try:
            with pytest.raises(BootstrapFailure) as failed:
                await link.prove(*ADMIN, pinned=False)
        finally:
            await link.close()

    if rewrite_binding:
        assert isinstance(failed.value, AccessDenied)
    else:
        assert isinstance(failed.value, ConnectError)
        assert "channel binding mismatch" in failed.value.message
    finish = [r for r in relayed if r[0] == "/v1/join/auth/finish"]
    assert len(finish) == 1 and finish[0][1] != 200 and "token" not in finish[0][2]
    assert [r.path for r in member.received] == [
        "/v1/join/ca",
        "/v1/join/auth/start",
        "/v1/join/auth/finish",
    ]
    assert not any(r.carries(ADMIN[1]) for r in member.received)

    # Replaying the joiner's proof to the real member, in a session of the attacker's own,
    # gets no token either.
    captured = json.loads(member.received[-1].body)
    async with httpx.AsyncClient(verify=False, timeout=30) as client:
        started = await client.post(
            real.https_url + "/v1/join/auth/start",
            json={"username": ADMIN[0], "client_nonce": "a" * 32},
        )
        assert started.status_code == 200
        replay = {**captured, "session": started.json()["session"]}
        replay["channel_binding"] = base64.b64encode(real_binding).decode()
        answer = await client.post(real.https_url + "/v1/join/auth/finish", json=replay)
        assert answer.status_code != 200 and "token" not in answer.json()
        assert answer.json()["error_code"] == "access_denied"
        # And with no token, the admission is closed to the attacker.
        admitted = await client.post(
            real.https_url + "/v1/join/time",
            json={"t1": 1.0},
            headers={"x-cnm-join-token": "forged"},
        )
        assert admitted.status_code == 401
