"""Node certificates renew themselves (issue 11 §3), on real agents with a 20-second lifetime.

Each node renews at 2/3 of its certificate's lifetime through a member, authenticated by its
current certificate; after the first certificates have expired, the store (etcd, mutual TLS)
and HTTPS still work, with the renewed certificates.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

from cryptography import x509

from cnm.security import pki
from harness import bodies
from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body
from harness.polling import eventually

LIFETIME = 20


def cert_pem(agent: Agent) -> bytes:
    return agent.layout.cluster_tls.cert_file.read_bytes()


def serial(agent: Agent) -> int:
    return x509.load_pem_x509_certificate(cert_pem(agent)).serial_number


def completed(agent: Agent) -> None:
    status = agent.wait_state("completed", "error", auth=ADMIN)
    assert status["bootstrap_status"]["state"] == "completed", status


def serves_a_certificate_beyond(agent: Agent, moment: datetime) -> bool:
    pem = ssl.get_server_certificate((agent.addr, 9443)).encode()
    return pki.certificate_lifetime(pem)[1] > moment


def test_nodes_renew_their_certificates_and_keep_working(agents: AgentFactory) -> None:
    env = {"CNM_NODE_CERT_LIFETIME": str(LIFETIME)}
    first, second = agents.start(env=env), agents.start(env=env)
    body = create_body("renew.example.com")
    assert first.post("/v1/bootstrap/create_cluster", body).status_code == 200
    completed(first)
    joined = second.post("/v1/bootstrap/join_cluster", bodies.join_body([first.addr]))
    assert joined.status_code == 200
    completed(second)

    both = (first, second)
    originals = {agent.addr: cert_pem(agent) for agent in both}
    for uid, agent in enumerate(both, start=1):
        cert = originals[agent.addr]
        assert pki.certificate_uid(cert) == uid
        not_before, not_after = pki.certificate_lifetime(cert)
        assert (not_after - not_before - pki.CLOCK_SKEW).total_seconds() <= LIFETIME + 1
    first_serials = {agent.addr: serial(agent) for agent in both}
    latest_expiry = max(pki.certificate_lifetime(c)[1] for c in originals.values())

    # Past the first certificates' end, every node must be on a renewed one.
    def all_expired_and_renewed() -> bool:
        if datetime.now(UTC) <= latest_expiry:
            return False
        return all(serial(a) != first_serials[a.addr] for a in both)

    eventually(all_expired_and_renewed, timeout=LIFETIME * 4, interval=0.5, message="renewal")

    for index, agent in enumerate(both):
        assert pki.verify_chain(cert_pem(agent), agent.ca_file.read_bytes())
        assert pki.certificate_uid(cert_pem(agent)) == index + 1
        eventually(
            lambda agent=agent: serves_a_certificate_beyond(agent, latest_expiry),
            timeout=30,
            message="HTTPS serves a renewed certificate",
        )
        # The store works through this node: a write goes to etcd over mutual TLS.
        user = {
            "email": f"u{index}@example.com",
            "password": "a-long-password-1",
            "role": "db_viewer",
        }
        created = agent.post("/v1/users", user, auth=ADMIN)
        assert created.status_code == 200, created.text
        listed = agent.get("/v1/users", auth=ADMIN)
        assert f"u{index}@example.com" in listed.text
