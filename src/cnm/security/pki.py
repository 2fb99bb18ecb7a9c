"""The cluster's X.509 PKI: keys, certificates, CSRs, signatures and chain checks.

Owns everything cnm does with certificates through the `cryptography` library: the self-signed
certificate of a node's HTTPS API, the per-cluster CA, the node certificates that CA signs for
etcd peer/client mutual TLS, and chain checks; the agent has it run by its signer process
(security/signing.py). Writing key material to disk is security/key_files.py's; a
certificate's dates, names, DER bytes and fingerprint read without this library,
security/cert_facts.py's; what a joiner checks, security/tls_trust.py's. All keys are EC
P-256: generating one takes well under a millisecond where RSA-2048 takes ~50-100 ms, and every
TLS stack etcd and Python use supports it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from cnm.errors import BadRequest, ConfigError
from cnm.security.cert_facts import CLOCK_SKEW
from cnm.security.node_certs import NODE_CERT_LIFETIME, CertKey, node_common_name

# X.520 upper bound for a commonName; cryptography refuses longer ones.
_CN_MAX = 64
# Signed certificates start CLOCK_SKEW in the past so a peer whose clock lags ours accepts them.


# --- building blocks --------------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# CA keys we sign with (both take a SHA-256 digest; EdDSA would not), and the subject keys we
# certify: what etcd (Go's crypto/tls) and OpenSSL both accept.
_SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_SubjectKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def _key_pem(key: _SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    if not common_name or len(common_name) > _CN_MAX:
        raise BadRequest(
            f"certificate common name must be 1-{_CN_MAX} characters", common_name=common_name
        )
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(sans: Sequence[str]) -> x509.SubjectAlternativeName | None:
    """IP literals become IPAddress entries (what TLS clients match an IP against), the rest DNS."""
    names: list[x509.GeneralName] = []
    for raw in sans:
        entry = raw.strip()
        try:
            general: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(entry))
        except ValueError:
            if not entry:
                raise BadRequest("empty subject alternative name") from None
            try:
                general = x509.DNSName(entry)
            except ValueError as exc:  # e.g. non-ASCII: X.509 wants the IDNA A-label
                raise BadRequest(f"invalid subject alternative name {raw!r}: {exc}") from None
        if general not in names:
            names.append(general)
    return x509.SubjectAlternativeName(names) if names else None


def _now() -> datetime:
    return datetime.now(UTC)


def _key_usage(*, digital_signature: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: _SubjectKey, not_after: datetime
) -> x509.CertificateBuilder:
    """What every certificate of ours has: random serial, skew-tolerant start, SKI."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _load_ca(ca: CertKey) -> tuple[x509.Certificate, _SigningKey]:
    """The CA certificate and its signing key; a mismatch is a broken cluster config."""
    try:
        cert = x509.load_pem_x509_certificate(ca.cert_pem)
        key = serialization.load_pem_private_key(ca.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cluster CA certificate or key is unreadable: {exc}") from None
    if not isinstance(key, _SigningKey):
        raise ConfigError("cluster CA key cannot sign certificates")
    if key.public_key() != cert.public_key():
        raise ConfigError("cluster CA key does not match the CA certificate")
    return cert, key


# --- certificates -----------------------------------------------------------------------------


def make_self_signed(common_name: str, sans: Sequence[str], *, days: int = 3650) -> CertKey:
    """A self-signed TLS server certificate (a node's HTTPS API before any CA exists)."""
    key = _new_key()
    name = _name(common_name)
    builder = (
        _builder(name, name, key.public_key(), _now() + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    san = _san(sans)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_ca(cluster_name: str, *, days: int = 3650) -> CertKey:
    """The cluster's root CA: may sign end-entity certificates only (path length 0)."""
    key = _new_key()
    name = _name(f"cnm cluster CA {cluster_name}"[:_CN_MAX])
    cert = (
        _builder(name, name, key.public_key(), _now() + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_csr(common_name: str, sans: Sequence[str]) -> tuple[bytes, bytes]:
    """A fresh key and a CSR for it: (csr_pem, key_pem). The key never leaves the node."""
    key = _new_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    san = _san(sans)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise BadRequest(f"certificate signing request is not a valid PEM CSR: {exc}") from None
    if not csr.is_signature_valid:
        raise BadRequest("certificate signing request signature is invalid")
    return csr


def check_csr(csr_pem: bytes) -> None:
    """400 unless `csr_pem` is a PEM CSR whose signature proves possession of its key."""
    _load_csr(csr_pem)


def _certify(
    ca: CertKey,
    csr: x509.CertificateSigningRequest,
    subject: x509.Name,
    san: x509.SubjectAlternativeName | None,
    lifetime: timedelta,
) -> bytes:
    """The CA's certificate for the CSR's public key with `subject` and `san`; every extension
    is decided here (end entity, TLS server and client), never taken from the CSR."""
    ca_cert, ca_key = _load_ca(ca)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    public_key = csr.public_key()
    if not isinstance(public_key, _SubjectKey):
        raise BadRequest("certificate signing request has an unsupported key type")

    not_after = min(_now() + lifetime, ca_cert.not_valid_after_utc)
    builder = (
        _builder(subject, ca_cert.subject, public_key, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        # etcd uses one certificate per member both to serve and to dial its peers.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(aki, critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def sign_csr(ca: CertKey, csr_pem: bytes, *, days: int = 825) -> bytes:
    """Sign a CSR with the cluster CA, taking its subject and SANs as asked (tools and tests
    that certify themselves; a member certifying a joiner uses `sign_node_csr`). Every other
    extension is decided here, so a CSR cannot ask for CA rights. The certificate never
    outlives the CA that signed it.
    """
    csr = _load_csr(csr_pem)
    try:
        san: x509.SubjectAlternativeName | None = csr.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        san = None
    except ValueError as exc:  # malformed extensions surface lazily
        raise BadRequest(f"certificate signing request has invalid extensions: {exc}") from None
    return _certify(ca, csr, csr.subject, san, timedelta(days=days))


def sign_node_csr(
    ca: CertKey,
    csr_pem: bytes,
    *,
    uid: int,
    sans: Sequence[str],
    lifetime: timedelta = NODE_CERT_LIFETIME,
) -> bytes:
    """A node certificate whose names the member chose: subject `node:<uid>`, SANs `sans`.

    Of the CSR only the public key (and the proof that the requester holds its private key, the
    CSR's signature) is used: its subject, SANs and extensions (CA:TRUE, wildcards, another
    node's address) are ignored, whatever they ask.
    """
    csr = _load_csr(csr_pem)
    return _certify(ca, csr, _name(node_common_name(uid)), _san(sans), lifetime)


def certificate_uid(cert_pem: bytes) -> int | None:
    """The node uid a member-issued node certificate names (`node:<uid>`), or None."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    value = str(names[0].value) if names else ""
    prefix, _, number = value.partition(":")
    return int(number) if prefix == "node" and number.isdigit() else None


def sign_data(key_pem: bytes, data: bytes) -> bytes:
    """An ECDSA-SHA256 signature of `data` with a node's private key (proof of possession)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("this node's key is not an EC key")
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_data(cert_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Whether `signature` over `data` was made with the key certified by `cert_pem`."""
    try:
        public_key = x509.load_pem_x509_certificate(cert_pem).public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return False
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        return False
    return True


def certificate_lifetime(cert_pem: bytes) -> tuple[datetime, datetime]:
    """(not before, not after) of a PEM certificate, in UTC."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def issue_cert(ca: CertKey, common_name: str, sans: Sequence[str], *, days: int = 825) -> CertKey:
    """A certificate and key, signed by the cluster CA (make_csr + sign_csr)."""
    csr_pem, key_pem = make_csr(common_name, sans)
    return CertKey(sign_csr(ca, csr_pem, days=days), key_pem)


def issue_node_cert(
    ca: CertKey, uid: int, sans: Sequence[str], *, lifetime: timedelta = NODE_CERT_LIFETIME
) -> CertKey:
    """Node `uid`'s certificate and a new key (create_cluster's node 1: its own member)."""
    csr_pem, key_pem = make_csr(node_common_name(uid), sans)
    return CertKey(sign_node_csr(ca, csr_pem, uid=uid, sans=sans, lifetime=lifetime), key_pem)


def issue_store_client_cert(ca: CertKey, uid: int) -> CertKey:
    """Node `uid`'s client certificate towards etcd's JSON gateway, with a new key. It has no
    common name: once etcd authentication is on, the gateway refuses any client certificate
    that has one (it cannot pass the name on as an etcd user). It names no user and no address,
    so it opens nothing by itself: the node's etcd password does (store/etcd_auth.py). It lives
    as long as the CA, so nothing has to renew it."""
    key = _new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cnm"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"store client of node {uid}"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    cert = _certify(ca, csr, subject, None, timedelta(days=36500))
    return CertKey(cert, _key_pem(key))


# --- verification -----------------------------------------------------------------------------


def single_ca_certificate(pem: bytes) -> bytes:
    """The one CA certificate in `pem`, re-encoded from what was parsed; ValueError otherwise.

    A joiner pins the fingerprint of exactly this certificate and builds its TLS trust from
    exactly these bytes: a PEM with a second certificate (an attacker's CA riding along behind
    the real one) or one that is not a CA is refused rather than partly trusted.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None
    if len(certs) != 1:
        raise ValueError(f"expected exactly one CA certificate, got {len(certs)}")
    cert = certs[0]
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        raise ValueError("the certificate is not a CA (no basic constraints)") from None
    if not constraints.ca:
        raise ValueError("the certificate is not a CA (CA:FALSE)")
    return cert.public_bytes(serialization.Encoding.PEM)


def verify_chain(cert_pem: bytes, ca_pem: bytes) -> bool:
    """True iff `cert_pem` was issued by the CA in `ca_pem` and both are valid now.

    cryptography's RFC 5280 path validation with the CA as the only trust anchor: signature,
    issuer name == CA subject, validity periods, and the CA's own profile (basic constraints,
    key usage). The leaf's extensions are not judged (permit_all), so the answer does not depend
    on its EKU or SAN kind; the client verifier is used because it matches no host name.
    Unparseable input is not a valid chain: False.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        verifier = (
            PolicyBuilder()
            .store(Store([ca_cert]))
            .time(_now())
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        verifier.verify(cert, [])
    except (ValueError, VerificationError, InvalidSignature):
        return False
    return True
