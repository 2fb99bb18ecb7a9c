"""A node whose certificate signer cannot work (security/signing.py) says so and changes nothing:
the signer here is a real child process that dies on every request."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cnm.cluster.license import LicenseTerms, generate_key_pair, issue_license, load_private_key
from cnm.security import signing
from harness.agents import basic
from harness.api_node import bootstrapped_node, memory_backend, node_config, running_node
from harness.bodies import ADMIN, create_body

DIES = "import sys, os; sys.stdin.buffer.readline(); os._exit(3)"


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
        broken = signing.Signer(command=[sys.executable, "-c", DIES])
        monkeypatch.setattr(signing, "shared", lambda: broken)
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
    broken = signing.Signer(command=[sys.executable, "-c", DIES])
    monkeypatch.setattr(signing, "shared", lambda: broken)
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
