"""A node renews its own certificate, well before it expires (issue 11 §3).

At 2/3 of its certificate's lifetime the agent makes a new key and CSR and sends them to a
member (another node first, itself last: every node admits) at `POST /v1/join/renew`, over
HTTPS verified against the cluster CA. It authenticates with what only it holds: its current
certificate, and a signature of the new CSR made with that certificate's key. The member
certifies the new key with the names of the node's record (cluster/membership.py
`renew_certificate`); a node removed from the cluster gets nothing. The new key and certificate
replace the files (etcd reloads them at each TLS handshake), then `on_renewed` lets the agent's
HTTPS and its store client present the new certificate on their next connections.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from cnm.cluster.handshake import RenewGrant, RenewRequest
from cnm.cluster.snapshot import ClusterSnapshot
from cnm.config import NodeConfig, url_host
from cnm.logs import event
from cnm.node.data_dir import ClusterTls
from cnm.security import cert_facts, key_files, signing

log = logging.getLogger(__name__)

RENEW_FRACTION = 2 / 3
MAX_WAIT = 60.0
REQUEST_TIMEOUT = 10.0


def renew_at(cert_pem: bytes) -> datetime:
    """When a certificate is due: 2/3 into its lifetime (the skew allowance not counted)."""
    # cert_facts, not pki: checked every minute, and `cryptography` would stay loaded for good.
    not_before, not_after = cert_facts.certificate_lifetime(cert_pem)
    start = min(not_before + cert_facts.CLOCK_SKEW, not_after)
    return start + (not_after - start) * RENEW_FRACTION


def _retry_after(cert_pem: bytes) -> float:
    """How long to wait after a failed renewal: a twentieth of the lifetime, 1 s to 60 s."""
    not_before, not_after = cert_facts.certificate_lifetime(cert_pem)
    lifetime = (not_after - not_before - cert_facts.CLOCK_SKEW).total_seconds()
    return min(max(lifetime / 20, 1.0), MAX_WAIT)


async def renew_once(
    config: NodeConfig, snapshot: ClusterSnapshot, uid: int, tls: ClusterTls
) -> bool:
    """Ask the members in turn for a new certificate; True once one is installed."""
    current = tls.cert_file.read_bytes()
    csr_pem, key_pem = await signing.make_csr("cnm node", [])
    signature = await signing.sign_data(tls.key_file.read_bytes(), csr_pem)
    request = RenewRequest(
        cert_pem=current.decode(),
        csr_pem=csr_pem.decode(),
        signature=base64.b64encode(signature).decode(),
    )
    nodes = sorted(snapshot.nodes(), key=lambda n: (n.uid == uid, n.uid))
    ca_pem = tls.ca_file.read_bytes()
    verify = pki_client_context(ca_pem)
    async with httpx.AsyncClient(verify=verify, timeout=REQUEST_TIMEOUT) as client:
        for node in nodes:
            if node.uid != uid and not snapshot.is_alive(node.uid):
                continue
            url = f"https://{url_host(node.addr)}:{config.https_port}/v1/join/renew"
            try:
                response = await client.post(url, json=request.to_wire())
            except httpx.HTTPError as exc:
                log.warning("certificate renewal through %s failed: %s", url, exc)
                continue
            if response.status_code != 200:
                log.warning("certificate renewal refused by %s: HTTP %d", url, response.status_code)
                continue
            cert_pem = RenewGrant.model_validate_json(response.content).cert_pem.encode()
            if (
                not await signing.verify_chain(cert_pem, ca_pem)
                or cert_facts.certificate_uid(cert_pem) != uid
            ):
                log.warning("certificate renewal through %s gave an unusable certificate", url)
                continue
            # Key first: the pair is whole again once the certificate follows.
            key_files.write_private(tls.key_file, key_pem)
            key_files.write_public(tls.cert_file, cert_pem)
            _, not_after = cert_facts.certificate_lifetime(cert_pem)
            log.info(
                "renewed this node's certificate through node %d, valid until %s",
                node.uid,
                not_after.isoformat(),
                extra=event("cert_renewed", through=node.uid, not_after=not_after.isoformat()),
            )
            return True
    return False


def pki_client_context(ca_pem: bytes) -> ssl.SSLContext:
    """TLS towards members: the cluster CA only; any node may answer on an address."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.check_hostname = False
    return context


async def run_cert_renewal(
    config: NodeConfig,
    snapshot: ClusterSnapshot,
    uid: int,
    tls: ClusterTls,
    on_renewed: Callable[[], None],
) -> None:
    """Renew this node's certificate whenever it is due; returns only when cancelled (or at
    once for a node without a member-issued certificate: no file, or one made by an earlier
    version, which names no node and lasts its 825 days)."""
    try:
        named = cert_facts.certificate_uid(tls.cert_file.read_bytes())
    except OSError:
        named = None
    if named != uid:
        log.info("this node's certificate names no node uid: it is not renewed automatically")
        return
    while True:
        current = tls.cert_file.read_bytes()
        due = renew_at(current)
        wait = (due - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(min(wait, MAX_WAIT))
            continue
        try:
            renewed = await renew_once(config, snapshot, uid, tls)
        except Exception:  # a failed attempt is retried; the certificate is still valid
            log.warning("certificate renewal failed", exc_info=True)
            renewed = False
        if renewed:
            on_renewed()
        else:
            await asyncio.sleep(_retry_after(current))
