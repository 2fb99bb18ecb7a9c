"""Signed licenses: their format, issuing, verification, the stored record and its checks.

Format. The terms (`owner`, `cluster_name`, `activation_date`, `expiration_date` as ISO-8601 UTC
with a `Z`, `shards_limit`, `nodes_limit`, `features`, `format`) are serialised as canonical JSON
(keys sorted, no spaces, ASCII only) and signed with Ed25519. The envelope
`{"signature": <base64 of the 64-byte signature>, "terms": {...}}`, itself canonical JSON, is
base64-encoded, wrapped at 64 columns and armoured between `----- LICENSE START -----` and
`----- LICENSE END -----` lines. Whitespace around and inside the armour is ignored, so a license
pasted into a YAML or JSON string with its line breaks lost still verifies.

Limits: `shards_limit` and `nodes_limit` are integers, and 0 means "no limit". They are never
null because typed clients parse them as integers (docs/api-contract.md §1); the trial license has
`shards_limit` 4 and `nodes_limit` 0.

Verification needs `cryptography` (Ed25519); the agent has its signer process do it
(security/signing.py), the command line and tests call `verify_license_text` directly.

Trust. An agent trusts the Ed25519 public keys of its `license_public_keys` setting: each entry is
either a PEM text (starting with `-----BEGIN`) or the path of a PEM file. A license verifies when
any of them verifies its signature. Keys are read at each check (a license is checked rarely), so
an unreadable entry is reported in the check's message instead of stopping the agent.

Checks, in this order (the first failing one is reported as `violation`): `malformed`,
`bad_signature`, `expired`, `not_yet_valid`, `cluster_name_mismatch`, `nodes_limit_exceeded`,
`shards_limit_exceeded`. The first two are `LicenseCorrupt` (400 on PUT), the others
`InvalidLicense` (406 on PUT); in bootstrap both are `invalid_license` with
`error_details.violation`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnm.clock import iso, parse_iso
from cnm.cluster.records import LicenseRecord
from cnm.errors import InvalidLicense, LicenseCorrupt
from cnm.security import signing

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# `cryptography` is imported by the functions that use it, not with this module: the agent
# imports this module for its routes and limits, and needs the library (ten MiB of resident
# memory) only when a license is actually read or made.

LICENSE_START = "----- LICENSE START -----"
LICENSE_END = "----- LICENSE END -----"
FORMAT_VERSION = 1
MAX_LICENSE_CHARS = 16_384
MAX_TEXT_CHARS = 256
MAX_FEATURES = 64
MAX_LIMIT = 2**31 - 1
_WRAP = 64


class Violation(StrEnum):
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    CLUSTER_NAME_MISMATCH = "cluster_name_mismatch"
    NODES_LIMIT_EXCEEDED = "nodes_limit_exceeded"
    SHARDS_LIMIT_EXCEEDED = "shards_limit_exceeded"


def _corrupt(violation: Violation, message: str) -> LicenseCorrupt:
    return LicenseCorrupt(f"license: {message}", violation=violation.value)


def _violated(violation: Violation, message: str) -> InvalidLicense:
    return InvalidLicense(f"license: {message}", violation=violation.value)


@dataclass(frozen=True)
class LicenseTerms:
    owner: str
    cluster_name: str
    activation_date: datetime
    expiration_date: datetime
    shards_limit: int
    nodes_limit: int
    features: tuple[str, ...]

    def to_document(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "owner": self.owner,
            "cluster_name": self.cluster_name,
            "activation_date": iso(self.activation_date),
            "expiration_date": iso(self.expiration_date),
            "shards_limit": self.shards_limit,
            "nodes_limit": self.nodes_limit,
            "features": list(self.features),
        }

    @classmethod
    def from_document(cls, document: object) -> LicenseTerms:
        """The terms of a decoded license; `malformed` for anything off."""
        if not isinstance(document, dict):
            raise _corrupt(Violation.MALFORMED, "the terms are not a JSON object")
        if document.get("format") != FORMAT_VERSION:
            raise _corrupt(
                Violation.MALFORMED,
                f"unsupported license format {document.get('format')!r} (expected "
                f"{FORMAT_VERSION})",
            )
        texts = {}
        for name in ("owner", "cluster_name"):
            value = document.get(name)
            if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
                raise _corrupt(Violation.MALFORMED, f"{name} is not a string")
            texts[name] = value
        dates = {}
        for name in ("activation_date", "expiration_date"):
            value = document.get(name)
            try:
                dates[name] = parse_iso(value) if isinstance(value, str) else None
            except ValueError:
                dates[name] = None
            if dates[name] is None:
                raise _corrupt(
                    Violation.MALFORMED, f"{name} is not a date like 2025-01-31T00:00:00Z"
                )
        limits = {}
        for name in ("shards_limit", "nodes_limit"):
            value = document.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
                raise _corrupt(Violation.MALFORMED, f"{name} is not a non-negative integer")
            limits[name] = value
        features = document.get("features")
        if (
            not isinstance(features, list)
            or len(features) > MAX_FEATURES
            or not all(isinstance(f, str) and len(f) <= MAX_TEXT_CHARS for f in features)
        ):
            raise _corrupt(Violation.MALFORMED, "features is not a list of strings")
        activation, expiration = dates["activation_date"], dates["expiration_date"]
        assert activation is not None and expiration is not None
        if expiration <= activation:
            raise _corrupt(Violation.MALFORMED, "expiration_date is not after activation_date")
        return cls(
            owner=texts["owner"],
            cluster_name=texts["cluster_name"],
            activation_date=activation,
            expiration_date=expiration,
            shards_limit=limits["shards_limit"],
            nodes_limit=limits["nodes_limit"],
            features=tuple(features),
        )


def canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# --- keys ---------------------------------------------------------------------------------------


def generate_key_pair() -> tuple[bytes, bytes]:
    """(private key PEM in PKCS#8, public key PEM) of a new Ed25519 key pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_key_pem(private.public_key())


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; ValueError for anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_public_keys(entries: Sequence[str]) -> tuple[list[Ed25519PublicKey], list[str]]:
    """The usable keys of a `license_public_keys` setting, and a problem per unusable entry."""
    keys: list[Ed25519PublicKey] = []
    problems: list[str] = []
    for entry in entries:
        inline = entry.lstrip().startswith("-----BEGIN")
        where = "an inline key" if inline else entry
        try:
            pem = entry.encode() if inline else Path(entry).read_bytes()
            keys.append(load_public_key(pem))
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
    return keys, problems


# --- issuing and reading ------------------------------------------------------------------------


def issue_license(private_key: Ed25519PrivateKey, terms: LicenseTerms) -> str:
    """The armoured license text for `terms`, signed with `private_key`."""
    document = terms.to_document()
    signature = private_key.sign(canonical_json(document))
    envelope = canonical_json(
        {"signature": base64.b64encode(signature).decode(), "terms": document}
    )
    body = base64.b64encode(envelope).decode()
    lines = [body[i : i + _WRAP] for i in range(0, len(body), _WRAP)]
    return "\n".join([LICENSE_START, *lines, LICENSE_END]) + "\n"


def _unarmour(text: str) -> tuple[dict[str, Any], bytes]:
    """(terms document, signature) of an armoured license; `malformed` for anything off."""
    if len(text) > MAX_LICENSE_CHARS:
        raise _corrupt(Violation.MALFORMED, f"longer than {MAX_LICENSE_CHARS} characters")
    stripped = text.strip()
    if not (stripped.startswith(LICENSE_START) and stripped.endswith(LICENSE_END)):
        raise _corrupt(
            Violation.MALFORMED,
            f"expected the text between a '{LICENSE_START}' and a '{LICENSE_END}' line",
        )
    body = "".join(stripped[len(LICENSE_START) : -len(LICENSE_END)].split())
    try:
        envelope = json.loads(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise _corrupt(Violation.MALFORMED, "the armoured text is not a license") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("terms"), dict):
        raise _corrupt(Violation.MALFORMED, "the armoured text is not a license")
    try:
        signature = base64.b64decode(str(envelope.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise _corrupt(Violation.MALFORMED, "the signature is not base64") from None
    return envelope["terms"], signature


def signature_verdict(
    public_keys: Sequence[str | Ed25519PublicKey], signed: bytes, signature: bytes
) -> str | None:
    """None when a trusted key verifies `signature` of `signed`, else why not (the message of
    a `bad_signature`). Runs in the signer process for the agent (`read_license_checked`)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = [key for key in public_keys if isinstance(key, Ed25519PublicKey)]
    loaded, problems = load_public_keys([key for key in public_keys if isinstance(key, str)])
    keys.extend(loaded)
    for key in keys:
        try:
            key.verify(signature, signed)
            return None
        except InvalidSignature:
            continue
    if not keys:
        reason = "no license public key is configured on this node (license_public_keys)"
        if problems:
            reason = "none of the configured license public keys is usable: " + "; ".join(problems)
        return reason
    return (
        "the signature does not verify with any trusted license key (forged, altered, or "
        "issued by a vendor this node does not trust)"
    )


def _opened(text: str) -> tuple[LicenseTerms, bytes, bytes]:
    """(terms, the bytes the signature covers, the signature) of an armoured license."""
    terms_document, signature = _unarmour(text)
    return LicenseTerms.from_document(terms_document), canonical_json(terms_document), signature


def _trusted(terms: LicenseTerms, verdict: str | None) -> LicenseTerms:
    """`terms`, once `signature_verdict` found nothing wrong; else the `bad_signature`."""
    if verdict is not None:
        raise _corrupt(Violation.BAD_SIGNATURE, verdict)
    return terms


def read_license(text: str, public_keys: Sequence[str | Ed25519PublicKey]) -> LicenseTerms:
    """The terms of a license whose signature a trusted key verifies (no other check)."""
    terms, signed, signature = _opened(text)
    return _trusted(terms, signature_verdict(public_keys, signed, signature))


async def read_license_checked(text: str, public_keys: Sequence[str]) -> LicenseTerms:
    """`read_license` for the agent: the signature is checked by the signer process
    (security/signing.py), so that the agent never loads `cryptography`."""
    terms, signed, signature = _opened(text)
    verdict = await signing.license_signature_verdict(list(public_keys), signed, signature)
    return _trusted(terms, verdict)


# --- checks ---------------------------------------------------------------------------------------


def _limit(value: object) -> int:
    """A stored limit; null (records of older versions) and 0 mean no limit."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def check_dates(activation: datetime, expiration: datetime, now: datetime) -> None:
    if now >= expiration:
        raise _violated(Violation.EXPIRED, f"expired on {iso(expiration)}")
    if now < activation:
        raise _violated(Violation.NOT_YET_VALID, f"not valid before {iso(activation)}")


def check_counts(
    *, nodes_limit: object, shards_limit: object, node_count: int, shard_count: int
) -> None:
    nodes = _limit(nodes_limit)
    if nodes and node_count > nodes:
        raise _violated(
            Violation.NODES_LIMIT_EXCEEDED,
            f"allows {nodes} nodes and the cluster would have {node_count}",
        )
    shards = _limit(shards_limit)
    if shards and shard_count > shards:
        raise _violated(
            Violation.SHARDS_LIMIT_EXCEEDED,
            f"allows {shards} shards and the cluster has {shard_count}",
        )


def check_terms(
    terms: LicenseTerms, *, cluster_name: str, now: datetime, node_count: int, shard_count: int
) -> None:
    check_dates(terms.activation_date, terms.expiration_date, now)
    if terms.cluster_name.casefold() != cluster_name.casefold():
        raise _violated(
            Violation.CLUSTER_NAME_MISMATCH,
            f"issued for cluster {terms.cluster_name!r}, not {cluster_name!r}",
        )
    check_counts(
        nodes_limit=terms.nodes_limit,
        shards_limit=terms.shards_limit,
        node_count=node_count,
        shard_count=shard_count,
    )


def license_record(text: str, terms: LicenseTerms) -> LicenseRecord:
    """The record kept under /cnm/license for an installed license."""
    document = terms.to_document()
    del document["format"]
    return LicenseRecord.model_validate({**document, "license": text, "key": text, "trial": False})


def verify_license_text(
    text: str,
    public_keys: Sequence[str | Ed25519PublicKey],
    cluster_name: str,
    now: datetime,
    node_count: int,
    shard_count: int = 0,
) -> LicenseRecord:
    """Every check of a license to install: the record to store, or `LicenseCorrupt` /
    `InvalidLicense` with the first violation. The agent uses `check_license_text`."""
    terms = read_license(text, public_keys)
    return _installable(text, terms, cluster_name, now, node_count, shard_count)


async def check_license_text(
    text: str,
    public_keys: Sequence[str],
    cluster_name: str,
    now: datetime,
    node_count: int,
    shard_count: int = 0,
) -> LicenseRecord:
    """`verify_license_text` in the agent (create_cluster, PUT /v1/license), its signature
    checked by the signer process."""
    terms = await read_license_checked(text, public_keys)
    return _installable(text, terms, cluster_name, now, node_count, shard_count)


def _installable(
    text: str,
    terms: LicenseTerms,
    cluster_name: str,
    now: datetime,
    node_count: int,
    shard_count: int,
) -> LicenseRecord:
    """The record of a license whose signature verified, once its terms allow this cluster."""
    check_terms(
        terms, cluster_name=cluster_name, now=now, node_count=node_count, shard_count=shard_count
    )
    return license_record(text, terms)


def check_license_for_join(record: LicenseRecord, current_node_count: int, now: datetime) -> None:
    """The checks of the installed license when one more node joins (its signature and cluster
    name were checked at install): `expired`, `not_yet_valid`, `nodes_limit_exceeded`."""
    try:
        activation = parse_iso(record.activation_date)
        expiration = parse_iso(record.expiration_date)
    except ValueError:
        raise _corrupt(Violation.MALFORMED, "the cluster's license record is unreadable") from None
    check_dates(activation, expiration, now)
    check_counts(
        nodes_limit=record.nodes_limit,
        shards_limit=0,
        node_count=current_node_count + 1,
        shard_count=0,
    )


def public_license(record: LicenseRecord, now: datetime) -> dict[str, Any]:
    """GET /v1/license: the record's fields plus `expired` at `now`."""
    shown = record.document()
    shown["nodes_limit"] = _limit(shown.get("nodes_limit"))
    expires = shown.get("expiration_date")
    try:
        shown["expired"] = bool(expires) and parse_iso(str(expires)) <= now
    except ValueError:
        shown["expired"] = True
    return shown
