"""Unit tests of cnm.security.pki, including real TLS handshakes with the certificates it makes."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cnm.errors import BadRequest, ConfigError
from cnm.security.cert_facts import fingerprint_sha256, normalize_fingerprint
from cnm.security.key_files import make_durable, write_private, write_public
from cnm.security.pki import (
    CertKey,
    issue_cert,
    make_ca,
    make_csr,
    make_self_signed,
    sign_csr,
    verify_chain,
)


@pytest.fixture(scope="module")
def ca() -> CertKey:
    return make_ca("test-cluster")


@pytest.fixture(scope="module")
def other_ca() -> CertKey:
    return make_ca("other-cluster")


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_ca_is_a_ca(ca: CertKey) -> None:
    cert = _cert(ca.cert_pem)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.subject == cert.issuer
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "cnm cluster CA test-cluster"
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"


def test_ca_long_cluster_name_is_truncated() -> None:
    cert = _cert(make_ca("x" * 200).cert_pem)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(cn, str) and len(cn) == 64 and cn.startswith("cnm cluster CA xxx")


def test_node_cert_chains_to_its_ca_only(ca: CertKey, other_ca: CertKey) -> None:
    node = issue_cert(ca, "node-1", ["127.0.0.1", "node-1.cluster.local"])
    assert verify_chain(node.cert_pem, ca.cert_pem)
    assert not verify_chain(node.cert_pem, other_ca.cert_pem)
    assert _cert(node.cert_pem).issuer == _cert(ca.cert_pem).subject
    # Same subject, different key: the name alone proves nothing.
    impostor = make_ca("test-cluster")
    assert _cert(impostor.cert_pem).subject == _cert(ca.cert_pem).subject
    assert not verify_chain(node.cert_pem, impostor.cert_pem)


def test_verify_chain_ignores_leaf_eku(ca: CertKey) -> None:
    """A server-only leaf the CA signed still chains: verify_chain is about the issuer."""
    ca_cert = _cert(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server-only")]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    assert verify_chain(leaf.public_bytes(serialization.Encoding.PEM), ca.cert_pem)


def _signed_by(ca: CertKey, not_before: datetime, not_after: datetime) -> bytes:
    """A leaf the CA signed with explicit validity times (instead of waiting for time to pass)."""
    ca_cert = _cert(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(ca_key, hashes.SHA256())
    )
    return leaf.public_bytes(serialization.Encoding.PEM)


def test_verify_chain_rejects_expired_self_signed_and_garbage(ca: CertKey) -> None:
    now = datetime.now(UTC)
    expired = _signed_by(ca, now - timedelta(days=2), now - timedelta(days=1))
    not_yet_valid = _signed_by(ca, now + timedelta(days=1), now + timedelta(days=2))
    # The same construction with a current validity does chain: only the times differ.
    assert verify_chain(
        _signed_by(ca, now - timedelta(days=1), now + timedelta(days=1)), ca.cert_pem
    )
    assert not verify_chain(expired, ca.cert_pem)
    assert not verify_chain(not_yet_valid, ca.cert_pem)
    assert not verify_chain(make_self_signed("x", ["127.0.0.1"]).cert_pem, ca.cert_pem)
    assert not verify_chain(b"not a certificate", ca.cert_pem)
    assert not verify_chain(ca.cert_pem, b"garbage")


def test_issue_cert_days_sets_the_end_of_validity(ca: CertKey) -> None:
    # What the former test waited a second for: days=0 ends the validity now, not later.
    before = datetime.now(UTC).replace(microsecond=0)
    cert = _cert(issue_cert(ca, "old", ["10.0.0.1"], days=0).cert_pem)
    after = datetime.now(UTC)
    assert before <= cert.not_valid_after_utc <= after


def test_node_cert_extensions(ca: CertKey) -> None:
    node = issue_cert(ca, "node-1", ["10.1.2.3", "::1", "node-1.example", "10.1.2.3"])
    cert = _cert(node.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["node-1.example"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = _cert(ca.cert_pem).extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.value.digest
    skew = cert.not_valid_before_utc
    assert 4 * 60 <= (cert.not_valid_after_utc - skew).total_seconds() - 825 * 86400 <= 6 * 60
    # The key is the node's own and matches the certificate.
    key = serialization.load_pem_private_key(node.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()


def test_self_signed_sans_and_eku() -> None:
    ck = make_self_signed("node-api", ["192.168.0.7", "api.example"])
    cert = _cert(ck.cert_pem)
    assert cert.subject == cert.issuer
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.0.7")]
    assert san.get_values_for_type(x509.DNSName) == ["api.example"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(cert)


def test_sign_csr_copies_subject_and_sans(ca: CertKey) -> None:
    csr_pem, _ = make_csr("node-9", ["10.9.9.9"])
    cert = _cert(sign_csr(ca, csr_pem, days=30))
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "node-9"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.9.9.9")]


def test_sign_csr_ignores_requested_ca_rights(ca: CertKey) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert = _cert(sign_csr(ca, csr.public_bytes(serialization.Encoding.PEM)))
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_sign_csr_rejects_bad_signature(ca: CertKey) -> None:
    csr_pem, _ = make_csr("node-1", ["127.0.0.1"])
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature's last INTEGER
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(BadRequest, match="signature"):
        sign_csr(ca, tampered)


def test_sign_csr_rejects_unsupported_key_type(ca: CertKey) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed448")]))
        .sign(ed448.Ed448PrivateKey.generate(), None)
    )
    with pytest.raises(BadRequest, match="key type"):
        sign_csr(ca, csr.public_bytes(serialization.Encoding.PEM))


def test_sign_csr_with_mismatched_ca_key(ca: CertKey, other_ca: CertKey) -> None:
    csr_pem, _ = make_csr("node-1", ["127.0.0.1"])
    with pytest.raises(ConfigError, match="does not match"):
        sign_csr(CertKey(ca.cert_pem, other_ca.key_pem), csr_pem)


@pytest.mark.parametrize("garbage", [b"", b"hello", b"-----BEGIN CERTIFICATE REQUEST-----\nx\n"])
def test_sign_csr_rejects_garbage(ca: CertKey, garbage: bytes) -> None:
    with pytest.raises(BadRequest, match="not a valid PEM CSR"):
        sign_csr(ca, garbage)


def test_bad_names_are_bad_requests(ca: CertKey) -> None:
    with pytest.raises(BadRequest):
        issue_cert(ca, "", ["127.0.0.1"])
    with pytest.raises(BadRequest):
        issue_cert(ca, "n" * 65, ["127.0.0.1"])
    with pytest.raises(BadRequest):
        make_csr("node", [""])
    with pytest.raises(BadRequest):
        make_self_signed("node", ["bücher.example"])


def test_fingerprint(ca: CertKey) -> None:
    fp = fingerprint_sha256(ca.cert_pem)
    der = _cert(ca.cert_pem).public_bytes(serialization.Encoding.DER)
    assert len(fp) == 95
    digest = hashlib.sha256(der).hexdigest()
    assert fp == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    assert fp == fp.lower()


def test_normalize_fingerprint_variants(ca: CertKey) -> None:
    fp = fingerprint_sha256(ca.cert_pem)
    bare = fp.replace(":", "")
    for variant in (
        fp,
        fp.upper(),
        bare,
        bare.upper(),
        f"sha256:{bare}",
        f"SHA256:{fp.upper()}",
        f"  {fp.replace(':', ' ')} ",
        f"SHA256 {fp}",
    ):
        assert normalize_fingerprint(variant) == fp, variant
    for bad in ("", "abc", bare[:-2], bare + "00", bare[:-1] + "g", "md5:" + bare):
        with pytest.raises(ValueError):
            normalize_fingerprint(bad)


def test_write_private_mode_and_no_temp_left(tmp_path: Path) -> None:
    target = tmp_path / "node.key"
    old_umask = os.umask(0)  # even with a permissive umask the file must be 0600
    try:
        write_private(target, b"secret-1")
        write_private(target, b"secret-2")  # replacing an existing file
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"secret-2"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]


def test_write_public_mode(tmp_path: Path) -> None:
    target = tmp_path / "node.crt"
    old_umask = os.umask(0o077)  # a strict umask must not make certificates unreadable
    try:
        write_public(target, b"cert")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"cert"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["node.crt"]


def test_write_failure_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    with pytest.raises(OSError):
        write_private(target, b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["dir-in-the-way"]


def test_files_written_for_later_are_synced_once_each_and_their_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    cert, key = tmp_path / "node.crt", tmp_path / "node.key"
    write_public(cert, b"cert", durable=False)
    write_private(key, b"key", durable=False)
    assert synced == []  # nothing waited on the disk yet
    assert cert.read_bytes() == b"cert" and stat.S_IMODE(key.stat().st_mode) == 0o600
    make_durable([cert, key])
    assert synced == [str(cert), str(key), str(tmp_path)]
    write_private(key, b"key-2")  # the default: durable at once, file then directory
    assert [Path(p).name.startswith(".node.key.") for p in synced[3:]] == [True, False]
    assert synced[4] == str(tmp_path)


# --- real TLS handshakes ----------------------------------------------------------------------


def _files(tmp_path: Path, name: str, ck: CertKey) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    write_public(cert, ck.cert_pem)
    write_private(key, ck.key_pem)
    return cert, key


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> BaseException | None:
    """Serve one TLS connection on 127.0.0.1 and connect to it. Returns the server's error, if
    any; raises the client's. Both sides exchange a byte so TLS 1.3's post-handshake client
    certificate check is completed before either returns."""
    server_error: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(10)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    assert tls.recv(1) == b"?"
                    tls.sendall(b"!")
            except BaseException as exc:  # reported to the test thread
                server_error.append(exc)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"?")
                assert tls.recv(1) == b"!"
        finally:
            thread.join(10)
    return server_error[0] if server_error else None


def _server_ctx(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_tls_handshake_trusting_ca(tmp_path: Path, ca: CertKey, other_ca: CertKey) -> None:
    node = issue_cert(ca, "node-1", ["127.0.0.1"])
    cert, key = _files(tmp_path, "node", node)
    ca_file, _ = _files(tmp_path, "ca", ca)
    other_file, _ = _files(tmp_path, "other", other_ca)

    client = ssl.create_default_context(cafile=str(ca_file))
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert _handshake(_server_ctx(cert, key), client) is None

    wrong = ssl.create_default_context(cafile=str(other_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(_server_ctx(cert, key), wrong)


def test_tls_hostname_must_match_ip_san(tmp_path: Path, ca: CertKey) -> None:
    node = issue_cert(ca, "node-1", ["10.255.255.1", "node-1.example"])
    cert, key = _files(tmp_path, "node", node)
    ca_file, _ = _files(tmp_path, "ca", ca)
    client = ssl.create_default_context(cafile=str(ca_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        _handshake(_server_ctx(cert, key), client)


def test_mutual_tls(tmp_path: Path, ca: CertKey, other_ca: CertKey) -> None:
    server_cert, server_key = _files(tmp_path, "server", issue_cert(ca, "node-1", ["127.0.0.1"]))
    client_cert, client_key = _files(tmp_path, "client", issue_cert(ca, "node-2", ["10.0.0.2"]))
    ca_file, _ = _files(tmp_path, "ca", ca)

    def server_ctx() -> ssl.SSLContext:
        ctx = _server_ctx(server_cert, server_key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(ca_file))
        return ctx

    client = ssl.create_default_context(cafile=str(ca_file))
    client.load_cert_chain(client_cert, client_key)
    assert _handshake(server_ctx(), client) is None

    # A client certificate from another CA, or none at all, is refused by the server.
    stranger_cert, stranger_key = _files(
        tmp_path, "stranger", issue_cert(other_ca, "node-x", ["10.0.0.9"])
    )
    for cert_file in (stranger_cert, None):
        anonymous = ssl.create_default_context(cafile=str(ca_file))
        if cert_file is not None:
            anonymous.load_cert_chain(cert_file, stranger_key)
        with pytest.raises((ssl.SSLError, OSError)):
            _handshake(server_ctx(), anonymous)
