"""Attacks on the join, run against the real joiner code (issue 11 §1 and §3).

- A fake member over real TLS (tests/harness/fake_member.py) offers the real cluster CA with its
  own CA behind it, then serves TLS with a certificate of its own CA: a join pinned to the real
  CA's fingerprint must send it nothing secret.
- A member whose grant carries another CA than the one the joiner trusted is refused.
- A forged CSR (another node's address, CA:TRUE, a wildcard) gets a certificate with only the
  names the member chose.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from cnm import SOFTWARE_VERSION
from cnm.bootstrap.member_link import connect
from cnm.bootstrap.node_setup import node_settings
from cnm.cluster import model
from cnm.cluster.handshake import ClockReading, JoinRequest
from cnm.cluster.records import UserRecord
from cnm.errors import ConnectError
from cnm.node.data_dir import DataDir
from cnm.security import cert_facts, join_proof, pki
from harness.api_node import memory_backend, node_config, running_node
from harness.bodies import ADMIN, join_body
from harness.fake_member import FakeMember, fake_member
from harness.inprocess import MEMBER_ADDR, Member, member_node, wiring_to

SECRET = ADMIN[1]


def _time_reply(body: bytes) -> dict[str, float]:
    t1 = json.loads(body or b"{}").get("t1", 0.0)
    now = time.time()
    return {"t1": t1, "t2": now, "t3": now}


async def _try_join(member: FakeMember, fingerprint: str | None) -> None:
    """What join_cluster does up to the first request that carries credentials."""
    link = await connect(
        [member.address],
        default_port=member.port,
        pinned_fingerprint=fingerprint,
        local_address=None,
        attempts=1,
        retry_time=0.0,
    )
    try:
        await link.prove(*ADMIN, pinned=fingerprint is not None)
        await link.measure_clock(ADMIN)
    finally:
        await link.close()


async def test_a_second_ca_behind_the_pinned_one_is_refused_and_gets_no_secret(
    tmp_path: Path,
) -> None:
    real = pki.make_ca("the real cluster")
    holder: list[FakeMember] = []

    async def handler(method: str, path: str, body: bytes) -> tuple[int, object]:
        if path == "/v1/join/ca":
            bundle = real.cert_pem + holder[0].attacker_ca.cert_pem
            return 200, {"ca_pem": bundle.decode(), "ca_fingerprint": "x"}
        return 200, _time_reply(body)

    async with fake_member(tmp_path / "attacker", handler) as member:
        holder.append(member)
        with pytest.raises(ConnectError, match="exactly one CA certificate"):
            await _try_join(member, cert_facts.fingerprint_sha256(real.cert_pem))
    assert [r.path for r in member.received] == ["/v1/join/ca"]
    assert not any(r.carries(SECRET) for r in member.received)


async def test_a_pinned_certificate_that_is_no_ca_is_refused_at_first_sight(
    tmp_path: Path,
) -> None:
    # A server certificate (CA:FALSE) offered as the cluster CA, its fingerprint pinned: the
    # joiner refuses to trust it before its first request over TLS.
    leaf = pki.make_self_signed("not a ca", ["127.0.0.1"])

    async def handler(method: str, path: str, body: bytes) -> tuple[int, object]:
        if path == "/v1/join/ca":
            return 200, {"ca_pem": leaf.cert_pem.decode(), "ca_fingerprint": "x"}
        return 200, _time_reply(body)

    async with fake_member(tmp_path / "attacker", handler) as member:
        with pytest.raises(ConnectError, match="not a CA"):
            await _try_join(member, cert_facts.fingerprint_sha256(leaf.cert_pem))
    assert [r.path for r in member.received] == ["/v1/join/ca"]


async def test_the_real_ca_alone_does_not_make_the_attackers_tls_trusted(
    tmp_path: Path,
) -> None:
    real = pki.make_ca("the real cluster")

    async def handler(method: str, path: str, body: bytes) -> tuple[int, object]:
        if path == "/v1/join/ca":
            return 200, {"ca_pem": real.cert_pem.decode(), "ca_fingerprint": "x"}
        return 200, _time_reply(body)

    async with fake_member(tmp_path / "attacker", handler) as member:
        with pytest.raises(ConnectError):
            await _try_join(member, cert_facts.fingerprint_sha256(real.cert_pem))
    assert not any(r.carries(SECRET) for r in member.received)


class SwapGrantCa(httpx.AsyncBaseTransport):
    """A member (or a path to it) that answers the admission with another CA and a certificate
    from that CA."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.other = pki.make_ca("swapped")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/v1/join/node" or response.status_code != 200:
            return response
        grant = json.loads(await response.aread())
        grant["ca_pem"] = self.other.cert_pem.decode()
        grant["ca_fingerprint"] = cert_facts.fingerprint_sha256(self.other.cert_pem)
        grant["cert_pem"] = pki.issue_cert(self.other, "x", ["127.0.0.1"]).cert_pem.decode()
        return httpx.Response(200, json=grant)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _join(tmp_path: Path, member: Member, **kw: Any) -> dict[str, Any]:
    directory = tmp_path / "joiner"
    directory.mkdir()
    wiring = wiring_to(member, kw.pop("transport", None))
    config = node_config(directory, **kw.pop("config", {}))
    async with running_node(config, join_wiring=wiring, backend=memory_backend(member.store)) as j:
        response = await j.client.post(
            "/v1/bootstrap/join_cluster", json=join_body([MEMBER_ADDR], **kw)
        )
        assert response.status_code == 200, response.text
        return await j.wait_state("completed", "error", auth=ADMIN)


async def test_a_grant_with_another_ca_is_refused(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        status = await _join(tmp_path, member, transport=SwapGrantCa)
    assert status["state"] == "error", status
    assert status["error_code"] == "connect_error"
    assert "not the cluster CA" in status["error_details"]["message"]


class SwapGrantCert(httpx.AsyncBaseTransport):
    """A member (or a path to it) that answers the admission with the cluster CA but another
    node certificate: from another CA (`kind` "other_ca"), with a key that is not its own
    ("wrong_key"), or without the node's key as members before member-made keys ("no_key")."""

    def __init__(self, inner: httpx.AsyncBaseTransport, kind: str) -> None:
        self.inner = inner
        self.kind = kind

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/v1/join/node" or response.status_code != 200:
            return response
        grant = json.loads(await response.aread())
        if self.kind == "other_ca":
            other = pki.issue_node_cert(pki.make_ca("other"), grant["uid"], ["127.0.0.1"])
            grant["cert_pem"], grant["key_pem"] = other.cert_pem.decode(), other.key_pem.decode()
        elif self.kind == "wrong_key":
            grant["key_pem"] = pki.make_csr("x", [])[1].decode()
        else:
            grant["key_pem"] = None
        return httpx.Response(200, json=grant)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize(
    ("kind", "refusal"),
    [
        ("other_ca", "the cluster CA did not issue"),
        ("wrong_key", "not the certificate's"),
        ("no_key", "without the node certificate's key"),
    ],
)
async def test_a_grant_whose_certificate_the_joiner_cannot_use_is_refused(
    tmp_path: Path, kind: str, refusal: str
) -> None:
    async with member_node(tmp_path) as member:
        status = await _join(tmp_path, member, transport=lambda inner: SwapGrantCert(inner, kind))
    assert status["state"] == "error", status
    assert status["error_code"] == "connect_error"
    assert refusal in status["error_details"]["message"]


def forged_csr() -> str:
    """A CSR that asks for another node's identity and address, a wildcard and CA rights."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node:1")]))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address(MEMBER_ADDR)),
                    x509.DNSName("*.example.com"),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def join_request(addr: str, csr_pem: str, **fields: Any) -> JoinRequest:
    return JoinRequest(
        node_key="ab" * 16,
        addr=addr,
        software_version=SOFTWARE_VERSION,
        csr_pem=csr_pem,
        clock=ClockReading(offset_ms=0.0, uncertainty_ms=1.0),
        **fields,
    )


async def _admit(member: Member, request: JoinRequest) -> httpx.Response:
    settings = node_settings(member.node.config)
    request = request.model_copy(update={"node_settings": settings})
    return await member.node.client.post(
        "/v1/join/node", json=request.to_wire(), auth=httpx.BasicAuth(*ADMIN)
    )


async def test_a_forged_csr_gets_only_the_names_the_member_chose(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        response = await _admit(member, join_request("127.0.0.5", forged_csr()))
    assert response.status_code == 200, response.text
    cert = x509.load_pem_x509_certificate(response.json()["cert_pem"].encode())
    uid = response.json()["uid"]
    assert cert.subject.rfc4514_string() == f"CN=node:{uid}"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # Its own address, and 127.0.0.1 (loopback: etcd sees every connection from it); nothing
    # of what the CSR asked for.
    assert sans.get_values_for_type(x509.DNSName) == []
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.5",
        "127.0.0.1",
    ]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=364) < lifetime < timedelta(days=366)
    assert {e.oid for e in cert.extensions} >= {ExtensionOID.EXTENDED_KEY_USAGE}


@pytest.mark.parametrize(
    ("addr", "external"),
    [(MEMBER_ADDR, []), ("127.0.0.5", [MEMBER_ADDR])],
    ids=["addr", "external_addr"],
)
async def test_another_nodes_address_is_refused(
    tmp_path: Path, addr: str, external: list[str]
) -> None:
    async with member_node(tmp_path) as member:
        request = join_request(addr, forged_csr(), external_addr=external)
        response = await _admit(member, request)
    assert response.status_code == 406, response.text
    body = response.json()
    assert body["error_code"] == "config_error"
    assert body["error_details"]["fields"] == ["node.identity.addr"]
    assert f"{MEMBER_ADDR} is already node 1" in body["description"]


async def test_a_wildcard_external_address_is_refused(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        request = join_request("127.0.0.5", forged_csr(), external_addr=["*.example.com"])
        response = await _admit(member, request)
    assert response.status_code == 406, response.text
    assert response.json()["error_details"]["fields"] == ["node.identity.external_addr"]


async def test_a_fake_member_without_the_password_cannot_prove_itself(tmp_path: Path) -> None:
    holder: list[FakeMember] = []

    async def handler(method: str, path: str, body: bytes) -> tuple[int, object]:
        if path == "/v1/join/ca":
            ca = holder[0].attacker_ca.cert_pem.decode()
            return 200, {"ca_pem": ca, "ca_fingerprint": "x"}
        if path == "/v1/join/auth/start":
            return 200, {
                "session": "s",
                "server_nonce": "n" * 32,
                "salt": base64.b64encode(b"s" * 16).decode(),
                "time_cost": join_proof.TIME_COST,
                "memory_cost": join_proof.MEMORY_COST,
                "parallelism": 1,
            }
        if path == "/v1/join/auth/finish":
            signature = base64.b64encode(secrets.token_bytes(32)).decode()
            return 200, {"server_signature": signature, "token": "t", "expires_in": 60}
        return 200, _time_reply(body)

    async with fake_member(tmp_path / "attacker", handler) as member:
        holder.append(member)
        with pytest.raises(ConnectError, match="failed to prove"):
            await _try_join(member, None)
    paths = [r.path for r in member.received]
    assert paths == ["/v1/join/ca", "/v1/join/auth/start", "/v1/join/auth/finish"]
    assert not any(r.carries(SECRET) for r in member.received)
    # What it got is a proof for its own nonce and certificate, never the password.
    finish = json.loads(member.received[-1].body)
    assert set(finish) == {"session", "channel_binding", "client_proof"}


async def test_a_member_of_an_older_version_gets_no_password_unless_pinned(
    tmp_path: Path,
) -> None:
    holder: list[FakeMember] = []

    async def handler(method: str, path: str, body: bytes) -> tuple[int, object]:
        if path == "/v1/join/ca":
            ca = holder[0].attacker_ca.cert_pem.decode()
            return 200, {"ca_pem": ca, "ca_fingerprint": "x"}
        return 404, {"error_code": "not_found", "description": "no such route"}

    async with fake_member(tmp_path / "attacker", handler) as member:
        holder.append(member)
        with pytest.raises(ConnectError, match="does not offer the join's password proof"):
            await _try_join(member, None)
    assert not any(r.carries(SECRET) for r in member.received)


async def test_a_user_made_before_verifiers_can_join_after_one_sign_in(tmp_path: Path) -> None:
    async with member_node(tmp_path, verifier=False) as member:
        status = await _join(tmp_path, member)
        assert status["error_code"] == "access_denied", status
        # One Basic sign-in on the member gives the user its verifier.
        signed_in = await member.node.client.get("/v1/cluster", auth=httpx.BasicAuth(*ADMIN))
        assert signed_in.status_code == 200

        runtime = member.node.manager.runtime
        assert runtime is not None

        async def has_verifier() -> bool:
            # The in-process member's snapshot does not watch its store: reload it.
            await runtime.snapshot.load()
            user = runtime.snapshot.user(1)
            return user is not None and user.join_verifier is not None

        deadline = time.monotonic() + 30
        while not await has_verifier():
            assert time.monotonic() < deadline, "the verifier was never made"
            await asyncio.sleep(0.05)
        raw = await member.store.get(model.user_key(1))
        assert raw is not None
        stored = UserRecord.decode(raw.value)
        assert stored.join_verifier is not None
        assert SECRET not in raw.value.decode()
        (tmp_path / "joiner").rename(tmp_path / "joiner-1")
        status = await _join(tmp_path, member)
    assert status["state"] == "completed", status


def _renewal(cert_pem: bytes, signing_key_pem: bytes) -> dict[str, str]:
    csr_pem, _ = pki.make_csr("node:7", ["10.9.9.9", "*.example.com"])
    signature = pki.sign_data(signing_key_pem, csr_pem)
    return {
        "cert_pem": cert_pem.decode(),
        "csr_pem": csr_pem.decode(),
        "signature": base64.b64encode(signature).decode(),
    }


async def test_renewal_needs_the_current_certificate_and_its_key(tmp_path: Path) -> None:
    async with member_node(tmp_path) as member:
        tls = DataDir(member.node.config.data_dir).cluster_tls
        cert, key = tls.cert_file.read_bytes(), tls.key_file.read_bytes()
        client = member.node.client

        renewed = await client.post("/v1/join/renew", json=_renewal(cert, key))
        assert renewed.status_code == 200, renewed.text
        new = x509.load_pem_x509_certificate(renewed.json()["cert_pem"].encode())
        assert new.subject.rfc4514_string() == "CN=node:1"
        sans = new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == []
        assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
            MEMBER_ADDR,
            "127.0.0.1",
        }

        # The certificate alone (public: any TLS peer has seen it) is not enough.
        stranger = pki.make_csr("x", ["127.0.0.1"])[1]
        refused = await client.post("/v1/join/renew", json=_renewal(cert, stranger))
        assert refused.status_code == 401
        # Nor is a node certificate of another CA, with its key.
        other = pki.issue_node_cert(pki.make_ca("other"), 1, [MEMBER_ADDR])
        refused = await client.post("/v1/join/renew", json=_renewal(other.cert_pem, other.key_pem))
        assert refused.status_code == 401
        # A node no longer in the cluster renews nothing.
        await member.store.delete(model.node_key(1))
        await member.node.manager.runtime.snapshot.load()
        refused = await client.post("/v1/join/renew", json=_renewal(cert, key))
        assert refused.status_code == 401
