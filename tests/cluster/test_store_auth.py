"""etcd authentication between real agents and real etcd: the attacks, run for real (issue 11 §3).

Every node is its own etcd user whose password only it holds; the store's `root` is for member
changes and store users only. So: a certificate signed by the cluster CA opens nothing by itself
(neither one naming a made-up node, nor one naming no one), a node's own user cannot change the
store's members or users, and a removed node's password and certificate open nothing any more.
Without etcd auth every one of these requests would read the cluster's secrets.
"""

from __future__ import annotations

import base64
import json
import shutil
import stat
from pathlib import Path
from typing import Any

import httpx

from cnm.cluster import model
from cnm.node.data_dir import ClusterTls
from cnm.security import key_files, pki
from cnm.store.etcd_auth import load_credentials
from harness import cluster_setup, etcd_gateway
from harness.agents import Agent, AgentFactory, basic
from harness.bodies import ADMIN
from harness.cluster_setup import join
from harness.polling import eventually


def create(agent: Agent) -> None:
    cluster_setup.create(agent, "auth.example.com")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def read_prefix_body(prefix: str = model.PREFIX) -> dict[str, str]:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return {"key": b64(prefix), "range_end": b64(end)}


def gateway(
    agent: Agent, context: Any, path: str, body: dict[str, Any], token: str | None = None
) -> httpx.Response:
    headers = {"Authorization": token} if token else None
    return httpx.post(
        f"https://{agent.addr}:2379{path}", json=body, verify=context, headers=headers, timeout=5
    )


def refused(response: httpx.Response) -> bool:
    """etcd answered, and with no data: an error (permission denied, user name is empty, the
    gateway's refusal of a common name), never keys."""
    return response.status_code != 200 and "kvs" not in response.text


def cluster_ca(agent: Agent) -> pki.CertKey:
    """The CA key, as an attacker who got it with one certificate would use it: read here
    through the node's own store user (the CA key is in the store, not in the data dir)."""
    response = etcd_gateway.post(
        agent.addr, agent.layout.cluster_tls, "/v3/kv/range", {"key": b64(model.CA_KEY)}
    )
    response.raise_for_status()
    secret = json.loads(base64.b64decode(response.json()["kvs"][0]["value"]))
    return pki.CertKey(secret["cert_pem"].encode(), secret["key_pem"].encode())


def forged(directory: Path, name: str, cert: pki.CertKey) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    key_files.write_public(cert_file, cert.cert_pem)
    key_files.write_private(key_file, cert.key_pem)
    return cert_file, key_file


def no_cn_cert(ca: pki.CertKey, uid: int) -> pki.CertKey:
    return pki.issue_store_client_cert(ca, uid)


def test_certificates_alone_open_nothing_and_nodes_are_not_root(
    agents: AgentFactory, tmp_path: Path
) -> None:
    first = agents.start()
    create(first)
    tls = first.layout.cluster_tls
    ca = cluster_ca(first)

    # A valid CA-signed certificate naming a node that does not exist, and one naming no one.
    made_up = forged(tmp_path, "made-up", pki.issue_node_cert(ca, 999, [first.addr]))
    nameless = forged(tmp_path, "nameless", no_cn_cert(ca, 999))
    for cert in (made_up, nameless):
        context = etcd_gateway.client_context(tls, cert)
        response = gateway(first, context, "/v3/kv/range", read_prefix_body())
        assert refused(response), (cert, response.text)
        # Nor can it log in as the node it names, or as root, without the password.
        for user in ("node:999", "node:1", "root"):
            login = etcd_gateway.authenticate(f"https://{first.addr}:2379", context, user, "guess")
            assert login.status_code != 200 and "token" not in login.text, login.text
    # The node's own certificate (CN node:1) is no credential on the gateway either.
    own = etcd_gateway.client_context(tls, (tls.cert_file, tls.key_file))
    assert refused(gateway(first, own, "/v3/kv/range", read_prefix_body()))

    # The node's own user reads the cnm keys, and nothing else, and is not root: no member
    # changes, no users, no roles, no snapshot of the whole database.
    context = etcd_gateway.client_context(tls)
    token = etcd_gateway.node_token(f"https://{first.addr}:2379", tls)
    assert token
    ok = gateway(first, context, "/v3/kv/range", read_prefix_body(), token)
    assert ok.status_code == 200 and ok.json()["kvs"], ok.text
    outside = gateway(first, context, "/v3/kv/put", {"key": b64("/etc"), "value": b64("x")}, token)
    assert refused(outside) and "permission denied" in outside.text, outside.text
    for path, body in (
        ("/v3/cluster/member/add", {"peerURLs": ["https://127.0.0.1:1"], "isLearner": True}),
        ("/v3/auth/user/add", {"name": "intruder", "password": "x" * 16}),
        ("/v3/auth/user/grant", {"user": "node:1", "role": "root"}),
        ("/v3/auth/role/add", {"name": "intruder"}),
        ("/v3/auth/disable", {}),
    ):
        answer = gateway(first, context, path, body, token)
        assert answer.status_code != 200 and "permission denied" in answer.text, (path, answer)
    snapshot = gateway(first, context, "/v3/maintenance/snapshot", {}, token)
    assert "permission denied" in snapshot.text, snapshot.text[:200]

    # The password is the node's alone: 0600, never in its log.
    credentials = load_credentials(tls.store_credentials_file)
    assert credentials is not None and credentials.user == "node:1"
    assert stat.S_IMODE(tls.store_credentials_file.stat().st_mode) == 0o600
    assert credentials.password not in first.log()


def test_a_removed_node_password_and_certificates_open_nothing(
    agents: AgentFactory, tmp_path: Path
) -> None:
    first, second = agents.start(), agents.start()
    create(first)
    join(second, first)
    # What a thief of the second node's data dir holds: its password and its certificates.
    stolen = ClusterTls(tmp_path / "stolen")
    shutil.copytree(second.layout.cluster_tls.directory, stolen.directory)
    credentials = load_credentials(stolen.store_credentials_file)
    assert credentials is not None and credentials.user == "node:2"
    url = f"https://{first.addr}:2379"
    context = etcd_gateway.client_context(stolen)
    # Before the removal they open the store (the test can fail: they are the real thing).
    assert etcd_gateway.node_token(url, stolen)

    response = httpx.post(
        f"{first.http_url}/v1/nodes/2/actions/remove", headers=basic(*ADMIN), timeout=60
    )
    assert response.status_code == 200, response.text
    # The removed agent left: idle, its cluster data (password file included) wiped.
    eventually(
        lambda: second.status()["bootstrap_status"]["state"] == "idle",
        timeout=30,
        message=f"{second.addr} idle",
    )
    assert not second.layout.cluster_tls.store_credentials_file.exists()

    login = etcd_gateway.authenticate(url, context, credentials.user, credentials.password)
    assert login.status_code != 200 and "authentication failed" in login.text, login.text
    for cert in (stolen.store_client_files(), (stolen.cert_file, stolen.key_file)):
        answer = gateway(
            first,
            etcd_gateway.client_context(stolen, cert),
            "/v3/kv/range",
            {"key": b64(model.CA_KEY)},
        )
        assert refused(answer), answer.text
    # The cluster goes on as node 1 alone, its own user untouched.
    eventually(
        lambda: [n["uid"] for n in first.get("/v1/nodes", auth=ADMIN).json()] == [1],
        timeout=15,
        message="node 2 gone from the list",
    )
