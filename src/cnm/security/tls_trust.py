"""What a joiner checks of the certificates it is given, with Python's `ssl` (OpenSSL) alone.

A joining node trusts a cluster CA and is handed its node certificate and key; it checks both
without the `cryptography` library, whose import costs a join more CPU than anything else the
joiner does (and ten MiB it would keep for good; security/__init__.py):

- `sole_ca_certificate`: the PEM a member offers as the cluster CA holds exactly one
  certificate, and OpenSSL counts it a CA (X509_check_ca: CA:TRUE, as `cryptography`'s check
  in pki.single_ca_certificate); returned re-encoded from its DER bytes with their SHA-256
  fingerprint, so what is fingerprinted is all that is trusted.
- `issued_by`: a certificate and key (files) make a TLS server that a client trusting only the
  CA accepts, in memory: OpenSSL verifies the chain (signature, validity, the CA's
  constraints) and that the key is the certificate's.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

# Handshake legs in memory: TLS 1.3 needs two round trips; a few more are harmless.
_MAX_LEGS = 8


def sole_ca_certificate(pem: bytes) -> tuple[bytes, str]:
    """(PEM, SHA-256 fingerprint "ab:cd:...") of the one CA certificate in `pem`; ValueError
    when there is none, more than one, or it is not a CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not a PEM certificate ({exc})") from None
    counts = context.cert_store_stats()
    if counts["x509"] != 1:
        raise ValueError(f"expected exactly one CA certificate, got {counts['x509']}")
    if counts["x509_ca"] != 1:
        raise ValueError("the certificate is not a CA")
    der = context.get_ca_certs(binary_form=True)[0]
    return ssl.DER_cert_to_PEM_cert(der).encode(), hashlib.sha256(der).digest().hex(":")


def issued_by(cert_file: Path, key_file: Path, ca_pem: bytes) -> bool:
    """Whether the certificate in `cert_file` (with its key in `key_file`) chains to the CA."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False  # the chain is the question, not a name
    try:
        server.load_cert_chain(str(cert_file), str(key_file))
        client.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, OSError, UnicodeDecodeError, ValueError):
        return False
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(to_client, to_server)
    tls_server = server.wrap_bio(to_server, to_client, server_side=True)
    client_done = server_done = False
    for _ in range(_MAX_LEGS):
        try:
            if not client_done:
                tls_client.do_handshake()
                client_done = True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            return False  # the client refused the server's certificate
        try:
            if not server_done:
                tls_server.do_handshake()
                server_done = True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            return False
        if client_done and server_done:
            return True
    return False
