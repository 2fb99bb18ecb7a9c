"""Signed licenses on real agents: every violation on create, on PUT /v1/license and on join.

The agents trust a key pair made for the module: one through `CNM_LICENSE_PUBLIC_KEYS` (a file
path), the other through a `--config` TOML file (the PEM text inline).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cnm.clock import iso
from cnm.cluster import model
from cnm.cluster.license import LicenseTerms, generate_key_pair, issue_license, load_private_key
from cnm.cluster.runtime import open_store
from harness import bodies
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN

NAME = "lic.example.com"

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """(vendor private key PEM, path of the public key file)."""
    private, public = generate_key_pair()
    path = tmp_path_factory.mktemp("keys") / "vendor.pub.pem"
    path.write_bytes(public)
    return private, path


def license(private: bytes, **changes: Any) -> str:
    today = datetime.now(UTC).replace(microsecond=0)
    terms: dict[str, Any] = {
        "owner": "Acme",
        "cluster_name": NAME,
        "activation_date": today - timedelta(days=1),
        "expiration_date": today + timedelta(days=365),
        "shards_limit": 100,
        "nodes_limit": 5,
        "features": ("rof",),
    }
    terms.update(changes)
    return issue_license(load_private_key(private), LicenseTerms(**terms))


def violations(private: bytes) -> dict[str, str]:
    """A license per violation that a one-node cluster named NAME can have at creation."""
    today = datetime.now(UTC)
    return {
        "malformed": "----- LICENSE START -----\nbm90IGEgbGljZW5jZQ==\n----- LICENSE END -----",
        "bad_signature": license(generate_key_pair()[0]),
        "expired": license(
            private,
            activation_date=today - timedelta(days=40),
            expiration_date=today - timedelta(days=10),
        ),
        "not_yet_valid": license(private, activation_date=today + timedelta(days=2)),
        "cluster_name_mismatch": license(private, cluster_name="other.example.com"),
    }


def create_body(text: str | None) -> dict[str, Any]:
    """A create_cluster body for NAME, with license `text` (no `license` key when None)."""
    return bodies.create_body(NAME, **({} if text is None else {"license": text}))


@pytest.fixture(scope="module")
def node(module_agents: AgentFactory, keys: tuple[bytes, Path]) -> Agent:
    """An agent trusting the vendor key through the environment, not yet in a cluster."""
    return module_agents.start(env={"CNM_LICENSE_PUBLIC_KEYS": str(keys[1])})


def put_license(agent: Agent, body: Any, *, raw: bytes | None = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.put(
        agent.http_url + "/v1/license", content=content, headers=basic(*ADMIN), timeout=10
    )


def store_write(agent: Agent, key: str, document: dict[str, Any] | None) -> None:
    """Write (or delete) a record straight into the cluster's store, as another node would."""

    async def write() -> None:
        store = open_store((f"https://{agent.addr}:2379",), agent.layout.cluster_tls)
        try:
            if document is None:
                await store.delete(key)
            else:
                raw = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
                await store.put(key, raw)
        finally:
            await store.close()

    asyncio.run(write())


def test_each_violation_on_create(node: Agent, keys: tuple[bytes, Path]) -> None:
    for expected, text in violations(keys[0]).items():
        response = node.post("/v1/bootstrap/validate/create_cluster", create_body(text))
        assert response.status_code == 406, (expected, response.text)
        status = response.json()
        assert status["error_code"] == "invalid_license", expected
        assert status["error_details"]["violation"] == expected
        assert status["error_details"]["message"].startswith("license: ")
    valid = node.post("/v1/bootstrap/validate/create_cluster", create_body(license(keys[0])))
    assert valid.status_code == 200, valid.text
    # A real attempt fails the same way, and leaves the node free to try again.
    forged = violations(keys[0])["bad_signature"]
    assert node.post("/v1/bootstrap/create_cluster", create_body(forged)).status_code == 200
    status = node.wait_state("error", "completed")["bootstrap_status"]
    assert status["error_code"] == "invalid_license"
    assert status["error_details"]["violation"] == "bad_signature"


def test_create_with_a_license_installs_it(node: Agent, keys: tuple[bytes, Path]) -> None:
    text = license(keys[0])
    assert node.post("/v1/bootstrap/create_cluster", create_body(text)).status_code == 200
    status = node.wait_state("completed", "error", auth=ADMIN)["bootstrap_status"]
    assert status["state"] == "completed", status
    shown = node.get("/v1/license", auth=ADMIN).json()
    assert shown["license"] == text and shown["key"] == text
    assert (shown["owner"], shown["cluster_name"], shown["features"]) == ("Acme", NAME, ["rof"])
    assert (shown["shards_limit"], shown["nodes_limit"], shown["expired"]) == (100, 5, False)


def test_each_violation_on_put(node: Agent, keys: tuple[bytes, Path]) -> None:
    before = node.get("/v1/license", auth=ADMIN).json()
    for expected, text in violations(keys[0]).items():
        response = put_license(node, {"license": text})
        status = 400 if expected in ("malformed", "bad_signature") else 406
        assert response.status_code == status, (expected, response.text)
        body = response.json()
        assert body["error_code"] == "invalid_license"
        assert body["violation"] == body["error_details"]["violation"] == expected
    # Counts: a second node record (down) with shards on it.
    fake = {"uid": 99, "addr": "127.0.0.99", "shard_count": 6}
    store_write(node, model.node_key(99), fake)
    try:
        for expected, limits in (
            ("nodes_limit_exceeded", {"nodes_limit": 1}),
            ("shards_limit_exceeded", {"nodes_limit": 0, "shards_limit": 5}),
        ):
            response = put_license(node, {"license": license(keys[0], **limits)})
            assert response.status_code == 406, response.text
            assert response.json()["error_details"]["violation"] == expected
        fits = put_license(node, {"license": license(keys[0], nodes_limit=2, shards_limit=6)})
        assert fits.status_code == 200, fits.text
    finally:
        store_write(node, model.node_key(99), None)
    assert node.get("/v1/license", auth=ADMIN).json()["nodes_limit"] == 2
    assert node.get("/v1/license", auth=ADMIN).json() != before


def test_put_takes_the_text_itself_too(node: Agent, keys: tuple[bytes, Path]) -> None:
    text = license(keys[0], owner="Raw Corp")
    response = put_license(node, None, raw=text.encode())
    assert response.status_code == 200, response.text
    assert response.json()["owner"] == "Raw Corp"
    assert node.get("/v1/license", auth=ADMIN).json()["owner"] == "Raw Corp"


def test_checking_licenses_never_loads_cryptography_into_the_agent(
    node: Agent, keys: tuple[bytes, Path]
) -> None:
    # Signatures are checked by the signer child (security/signing.py): the agent that checked
    # every license above, and checks this one, never maps the library.
    assert put_license(node, {"license": license(keys[0])}).status_code == 200
    assert node.process is not None
    assert "/cryptography/" not in Path(f"/proc/{node.process.pid}/maps").read_text()


def test_keys_inline_in_a_config_file(
    agents: AgentFactory, keys: tuple[bytes, Path], tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    pem = keys[1].read_text()
    config.write_text(f"license_public_keys = [{json.dumps(pem)}]\n")
    agent = agents.start(extra_args=["--config", str(config)])
    ok = agent.post("/v1/bootstrap/validate/create_cluster", create_body(license(keys[0])))
    assert ok.status_code == 200, ok.text
    untrusted = agents.start()
    refused = untrusted.post("/v1/bootstrap/validate/create_cluster", create_body(license(keys[0])))
    assert refused.json()["error_details"]["violation"] == "bad_signature"
    assert "license_public_keys" in refused.json()["error_details"]["message"]


def _join_body(member: Agent) -> dict[str, Any]:
    return {
        "action": "join_cluster",
        "cluster": {"nodes": [member.addr]},
        "credentials": {"username": ADMIN[0], "password": ADMIN[1]},
    }


def test_each_violation_on_join(
    node: Agent, agents: AgentFactory, keys: tuple[bytes, Path]
) -> None:
    joiner = agents.start()
    probe = joiner.post("/v1/bootstrap/validate/join_cluster", _join_body(node))
    if "not available" in probe.text:
        pytest.skip("join_cluster is not available in this version yet")
    today = datetime.now(UTC).replace(microsecond=0)
    cases = {
        "nodes_limit_exceeded": {"nodes_limit": 1},
        "expired": {
            "activation_date": iso(today - timedelta(days=30)),
            "expiration_date": iso(today - timedelta(seconds=1)),
        },
        "not_yet_valid": {"activation_date": iso(today + timedelta(days=1))},
    }
    original = node.get("/v1/license", auth=ADMIN).json()
    original.pop("expired")
    try:
        for expected, changes in cases.items():
            store_write(node, model.LICENSE_KEY, {**original, **changes})
            assert joiner.post("/v1/bootstrap/join_cluster", _join_body(node)).status_code == 200
            status = joiner.wait_state("error", "completed", timeout=30)["bootstrap_status"]
            assert status.get("error_code") == "invalid_license", (expected, status)
            assert status["error_details"]["violation"] == expected
    finally:
        store_write(node, model.LICENSE_KEY, original)
