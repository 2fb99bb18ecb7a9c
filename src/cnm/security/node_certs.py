"""What cnm's certificates are, without the `cryptography` library: the PEM certificate-and-key
pair, and a node certificate's subject, names and default lifetime.

security/pki.py makes and checks certificates with `cryptography`; the agent never imports it
(ten MiB it would keep for good) but has the signer process run it (security/signing.py). Both
sides need these definitions, so they live here, where importing them costs nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

# A node certificate's default lifetime (issue 11 §3): one year, renewed by the agent at 2/3.
NODE_CERT_LIFETIME = timedelta(days=365)


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes


def node_common_name(uid: int) -> str:
    """The subject a member gives node `uid`'s certificate: the node's identity, not its name."""
    return f"node:{uid}"


def node_cert_sans(addr: str, external: Sequence[str]) -> list[str]:
    """Names in a node's certificate. etcd checks a peer's certificate IP SANs against the
    connection's source address, and on a loopback cluster the kernel sources every connection
    from 127.0.0.1, so a node on a loopback address also carries 127.0.0.1."""
    # Only addresses the cluster knows the node by: a member certifies a joiner with these, and
    # a name the member cannot check (the joiner's host name) would be the joiner's word.
    sans = [addr, *external]
    if ipaddress.ip_address(addr).is_loopback:
        sans.append("127.0.0.1")
    return list(dict.fromkeys(sans))
