"""Facts of a PEM certificate read without the `cryptography` library: its validity period and
its subject's common name; and the canonical form of a fingerprint an operator typed.

A node in a cluster checks its own certificate when it starts and every minute after (is it
due for renewal? does it name this node? cluster/cert_renewal.py). Loading `cryptography` for
that alone keeps about ten MiB resident for the agent's whole life, so these two reads walk the
DER encoding themselves: the certificate is the node's own file, written by this code, and
anything that does not parse as a certificate raises `ValueError`, as `cryptography` would.
Likewise a certificate's DER bytes and SHA-256 fingerprint (the cluster CA's, offered to every
joiner; the served certificate's, bound into each join's password proof). Everything that
signs, verifies or issues stays in security/pki.py.

The layout read (RFC 5280 §4.1): Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
[0] version OPTIONAL, serialNumber, signature AlgorithmIdentifier, issuer Name, validity
SEQUENCE { notBefore Time, notAfter Time }, subject Name, ... }, ... }.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import UTC, datetime, timedelta

# The allowance for clocks that differ between nodes: certificates start this much in the past
# (pki.py), and renewal does not count it as lifetime (cluster/cert_renewal.py).
CLOCK_SKEW = timedelta(minutes=5)

_SEQUENCE = 0x30
_SET = 0x31
_VERSION = 0xA0
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
# 2.5.4.3, id-at-commonName, DER-encoded.
_COMMON_NAME = bytes((0x55, 0x04, 0x03))
_STRING_TAGS = frozenset((0x0C, 0x13, 0x14, 0x16, 0x1E))  # UTF8, Printable, T61, IA5, BMP
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _element(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, content, offset after it) of the DER element at `offset`."""
    if offset + 2 > len(data):
        raise ValueError("truncated certificate")
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or offset + count > len(data):
            raise ValueError("bad length in certificate")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise ValueError("truncated certificate")
    return tag, data[offset:end], end


def _children(content: bytes) -> list[tuple[int, bytes]]:
    items = []
    offset = 0
    while offset < len(content):
        tag, value, offset = _element(content, offset)
        items.append((tag, value))
    return items


def _der(cert_pem: bytes) -> bytes:
    text = cert_pem.decode("ascii", errors="replace")
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start + 1)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate found")
    try:
        return base64.b64decode("".join(text[start + len(begin) : stop].split()), validate=True)
    except binascii.Error:
        raise ValueError("bad base64 in the PEM certificate") from None


def _tbs_fields(cert_pem: bytes) -> list[tuple[int, bytes]]:
    tag, certificate, _ = _element(_der(cert_pem), 0)
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    parts = _children(certificate)
    if not parts or parts[0][0] != _SEQUENCE:
        raise ValueError("not a certificate")
    fields = _children(parts[0][1])
    if fields and fields[0][0] == _VERSION:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or any(t != _SEQUENCE for t, _ in fields[1:5]):
        raise ValueError("not a certificate")
    return fields


def _time(tag: int, value: bytes) -> datetime:
    text = value.decode("ascii", errors="replace")
    if tag == _UTC_TIME and len(text) == 13 and text.endswith("Z"):
        # RFC 5280 §4.1.2.5.1: YY below 50 is 20YY, else 19YY.
        year = int(text[:2])
        text = f"{2000 + year if year < 50 else 1900 + year}{text[2:]}"
    elif not (tag == _GENERALIZED_TIME and len(text) == 15 and text.endswith("Z")):
        raise ValueError("certificate time not in the RFC 5280 form")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def certificate_lifetime(cert_pem: bytes) -> tuple[datetime, datetime]:
    """(not before, not after) of a PEM certificate, in UTC; `ValueError` if it is none."""
    validity = _children(_tbs_fields(cert_pem)[3][1])
    if len(validity) != 2:
        raise ValueError("bad validity in certificate")
    return _time(*validity[0]), _time(*validity[1])


def common_name(cert_pem: bytes) -> str | None:
    """The first common name of the certificate's subject, or None; `ValueError` if it is no
    certificate."""
    for tag, attributes in _children(_tbs_fields(cert_pem)[4][1]):
        if tag != _SET:
            raise ValueError("bad subject in certificate")
        for kind, attribute in _children(attributes):
            pair = _children(attribute) if kind == _SEQUENCE else []
            if len(pair) == 2 and pair[0] == (0x06, _COMMON_NAME) and pair[1][0] in _STRING_TAGS:
                if pair[1][0] == 0x1E:
                    return pair[1][1].decode("utf-16-be")
                return pair[1][1].decode("utf-8", errors="replace")
    return None


def certificate_uid(cert_pem: bytes) -> int | None:
    """The node uid a member-issued node certificate names (`node:<uid>`), or None."""
    try:
        value = common_name(cert_pem) or ""
    except ValueError:
        return None
    prefix, _, number = value.partition(":")
    return int(number) if prefix == "node" and number.isdigit() else None


def normalize_fingerprint(text: str) -> str:
    """Canonical colon form of a fingerprint typed any common way; ValueError if it is not one.

    Accepts an optional "sha256:" / "SHA256 " prefix, upper case, and colons or spaces between
    bytes, so operators can paste what openssl, browsers or our API print.
    """
    cleaned = text.strip().lower()
    for prefix in ("sha256:", "sha256"):
        if cleaned.startswith(prefix):
            cleaned = cleaned[len(prefix) :]
            break
    cleaned = re.sub(r"[\s:]", "", cleaned)
    if not _HEX64.fullmatch(cleaned):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits): {text!r}")
    return bytes.fromhex(cleaned).hex(":")


def certificate_der(cert_pem: bytes) -> bytes:
    """The DER bytes of the (first) certificate in a PEM (what TLS sends, what channel bindings
    and fingerprints hash); `ValueError` if it holds no certificate."""
    _tbs_fields(cert_pem)  # a certificate, not any base64 between the markers
    return _der(cert_pem)


def fingerprint_sha256(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate as lowercase colon-separated hex ("ab:cd:...", 95 chars),
    as pki.fingerprint_sha256 gives it; `ValueError` if `cert_pem` holds no certificate."""
    return hashlib.sha256(certificate_der(cert_pem)).digest().hex(":")
