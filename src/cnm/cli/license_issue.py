"""`cnm license issue` and `cnm license keygen`: make signed licenses offline.

For vendors and tests: `keygen` makes an Ed25519 key pair (the private key file is written 0600),
`issue` signs license terms with the private key. Agents that list the public key in their
`license_public_keys` setting accept the licenses. Neither command talks to a node.
These are plain functions; the CLI attaches them to its `license` group.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cnm.cluster.license import (
    MAX_FEATURES,
    MAX_LIMIT,
    MAX_TEXT_CHARS,
    LicenseTerms,
    generate_key_pair,
    issue_license,
    load_private_key,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _activation(text: str | None) -> datetime:
    """Midnight UTC today by default: a license activated "now" would not yet be valid on a
    node whose clock is a little behind the vendor's."""
    if text is None:
        return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for layout in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise _fail(f"--activation: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, got {text!r}")


def issue(
    key: Annotated[Path, typer.Option(help="The vendor's Ed25519 private key (PEM)")],
    owner: Annotated[str, typer.Option(help="Who the license is for")],
    cluster_name: Annotated[str, typer.Option(help="The FQDN of the cluster it is for")],
    days: Annotated[int, typer.Option(help="Days of validity from the activation date")],
    shards_limit: Annotated[int, typer.Option(help="Most shards allowed; 0 = no limit")],
    nodes_limit: Annotated[int, typer.Option(help="Most nodes allowed; 0 = no limit")],
    features: Annotated[str, typer.Option(help="Comma-separated feature names")] = "",
    activation: Annotated[
        str | None,
        typer.Option(help="First valid day, YYYY-MM-DD or ISO-8601 UTC [today, 00:00 UTC]"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the license here [stdout]")] = None,
) -> None:
    """Sign a license with a vendor key.

    Example: cnm license issue --key vendor.pem --owner Acme --cluster-name c1.example.com
    --days 365 --shards-limit 100 --nodes-limit 10 --features rof,crdt --out acme.license
    """
    if not 1 <= days <= 36_500:
        raise _fail("--days: expected 1..36500")
    for name, value in (("--shards-limit", shards_limit), ("--nodes-limit", nodes_limit)):
        if not 0 <= value <= MAX_LIMIT:
            raise _fail(f"{name}: expected 0..{MAX_LIMIT}")
    for name, text in (("--owner", owner), ("--cluster-name", cluster_name)):
        if len(text) > MAX_TEXT_CHARS:
            raise _fail(f"{name}: at most {MAX_TEXT_CHARS} characters")
    names = tuple(part.strip() for part in features.split(",") if part.strip())
    if len(names) > MAX_FEATURES:
        raise _fail(f"--features: at most {MAX_FEATURES}")
    try:
        private_key = load_private_key(key.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise _fail(f"--key {key}: {exc}") from None
    start = _activation(activation)
    terms = LicenseTerms(
        owner=owner,
        cluster_name=cluster_name,
        activation_date=start,
        expiration_date=start + timedelta(days=days),
        shards_limit=shards_limit,
        nodes_limit=nodes_limit,
        features=names,
    )
    text = issue_license(private_key, terms)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"license for {cluster_name} written to {out}", err=True)


def keygen(
    out_private: Annotated[Path, typer.Option(help="Where to write the private key (0600)")],
    out_public: Annotated[Path, typer.Option(help="Where to write the public key")],
) -> None:
    """Make an Ed25519 key pair for signing licenses; agents trust the public one through
    `license_public_keys`.

    Example: cnm license keygen --out-private vendor.pem --out-public vendor.pub.pem
    """
    private_pem, public_pem = generate_key_pair()
    try:
        fd = os.open(out_private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _fail(f"--out-private {out_private}: exists; not overwriting a key") from None
    except OSError as exc:
        raise _fail(f"--out-private {out_private}: {exc}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    try:
        out_public.write_bytes(public_pem)
    except OSError as exc:
        raise _fail(f"--out-public {out_public}: {exc}") from None
    typer.echo(f"private key {out_private}, public key {out_public}", err=True)
