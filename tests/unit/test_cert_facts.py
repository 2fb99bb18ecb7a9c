"""cert_facts reads the same validity and common name as the `cryptography` library (pki.py),
on the certificates cnm makes and on the time and string forms it does not make itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cnm.security import cert_facts, pki


def _cert(name: x509.Name, not_before: datetime, not_after: datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_the_certificates_cnm_makes_read_as_cryptography_reads_them() -> None:
    ca = pki.make_ca("facts.example.com")
    made = [
        pki.make_self_signed("cnm node 127.0.0.1", ["127.0.0.1", "host"]).cert_pem,
        ca.cert_pem,
        pki.issue_node_cert(ca, 7, ["127.0.0.7"]).cert_pem,
        pki.issue_store_client_cert(ca, 7).cert_pem,
    ]
    for pem in made:
        assert cert_facts.certificate_lifetime(pem) == pki.certificate_lifetime(pem)
        assert cert_facts.certificate_uid(pem) == pki.certificate_uid(pem)
        parsed = x509.load_pem_x509_certificate(pem)
        assert cert_facts.certificate_der(pem) == parsed.public_bytes(serialization.Encoding.DER)
        assert cert_facts.fingerprint_sha256(pem) == parsed.fingerprint(hashes.SHA256()).hex(":")
    assert cert_facts.certificate_uid(made[2]) == 7
    assert cert_facts.certificate_uid(made[0]) is None


def test_generalized_time_after_2049_and_a_printable_common_name() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cnm"),
            x509.NameAttribute(NameOID.COMMON_NAME, "node:12", x509.name._ASN1Type.PrintableString),
        ]
    )
    start = datetime(2049, 12, 31, 23, 0, tzinfo=UTC)
    end = datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC)
    pem = _cert(name, start, end)
    assert cert_facts.certificate_lifetime(pem) == (start, end) == pki.certificate_lifetime(pem)
    assert cert_facts.certificate_uid(pem) == 12
    assert cert_facts.common_name(pem) == "node:12"


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",  # SEQ{INTEGER}
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",  # truncated
    ],
)
def test_what_is_no_certificate_raises_value_error(pem: bytes) -> None:
    with pytest.raises(ValueError):
        cert_facts.certificate_lifetime(pem)
    assert cert_facts.certificate_uid(pem) is None
