"""Signed licenses: format, signatures, each violation, the join check, the issuing commands."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cnm.api.errors import error_body
from cnm.cli.license_issue import issue, keygen
from cnm.cluster.license import (
    LICENSE_END,
    LICENSE_START,
    LicenseTerms,
    check_license_for_join,
    generate_key_pair,
    issue_license,
    load_private_key,
    load_public_keys,
    public_license,
    read_license,
    verify_license_text,
)
from cnm.cluster.records import LicenseRecord, trial_license
from cnm.errors import InvalidLicense, LicenseCorrupt

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CLUSTER = "c1.example.com"


@pytest.fixture(scope="module")
def vendor() -> tuple[bytes, bytes]:
    return generate_key_pair()


def terms(**changes: object) -> LicenseTerms:
    fields: dict[str, object] = {
        "owner": "Acme",
        "cluster_name": CLUSTER,
        "activation_date": NOW - timedelta(days=1),
        "expiration_date": NOW + timedelta(days=30),
        "shards_limit": 10,
        "nodes_limit": 3,
        "features": ("rof", "crdt"),
    }
    fields.update(changes)
    return LicenseTerms(**fields)  # type: ignore[arg-type]


def signed(vendor: tuple[bytes, bytes], **changes: object) -> str:
    return issue_license(load_private_key(vendor[0]), terms(**changes))


def violation(exc: pytest.ExceptionInfo[InvalidLicense]) -> str:
    return str(exc.value.details["violation"])


def verify(text: str, vendor: tuple[bytes, bytes], **kw: object) -> dict[str, object]:
    args: dict[str, object] = {"cluster_name": CLUSTER, "now": NOW, "node_count": 1}
    args.update(kw)
    return verify_license_text(text, [vendor[1].decode()], **args)  # type: ignore[arg-type]


def test_round_trip_gives_the_record(vendor: tuple[bytes, bytes]) -> None:
    text = signed(vendor)
    assert text.startswith(LICENSE_START + "\n")
    assert text.rstrip().endswith(LICENSE_END)
    assert all(len(line) <= 64 for line in text.splitlines()[1:-1])
    record = verify(text, vendor)
    assert record.document() == {
        "owner": "Acme",
        "cluster_name": CLUSTER,
        "activation_date": "2025-05-31T12:00:00Z",
        "expiration_date": "2025-07-01T12:00:00Z",
        "shards_limit": 10,
        "nodes_limit": 3,
        "features": ["rof", "crdt"],
        "license": text,
        "key": text,
        "trial": False,
    }


def test_whitespace_and_case_of_the_cluster_name_do_not_matter(vendor: tuple[bytes, bytes]) -> None:
    text = signed(vendor)
    squashed = "  " + text.replace("\n", " ") + "\n\n"
    assert verify(squashed, vendor, cluster_name="C1.Example.COM").owner == "Acme"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a license",
        f"{LICENSE_START}\n{LICENSE_END}",
        f"{LICENSE_START}\n!!!!\n{LICENSE_END}",
        LICENSE_START + "\n" + base64.b64encode(b"[1, 2]").decode() + "\n" + LICENSE_END,
        LICENSE_START + "\n" + base64.b64encode(b'{"terms": 1}').decode() + "\n" + LICENSE_END,
        LICENSE_START + "\n" + "A" * 20000 + "\n" + LICENSE_END,
    ],
)
def test_malformed(vendor: tuple[bytes, bytes], text: str) -> None:
    with pytest.raises(LicenseCorrupt) as exc:
        verify(text, vendor)
    assert violation(exc) == "malformed"  # type: ignore[arg-type]
    assert exc.value.http_status == 400


def _rearmour(text: str, edit: object) -> str:
    body = "".join(text.strip().splitlines()[1:-1])
    envelope = json.loads(base64.b64decode(body))
    edit(envelope)  # type: ignore[operator]
    encoded = base64.b64encode(json.dumps(envelope).encode()).decode()
    return f"{LICENSE_START}\n{encoded}\n{LICENSE_END}\n"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shards_limit", -1),
        ("shards_limit", 1.5),
        ("nodes_limit", True),
        ("nodes_limit", "3"),
        ("owner", 7),
        ("features", "rof"),
        ("features", [1]),
        ("activation_date", "2025-05-31"),
        ("expiration_date", "2020-01-01T00:00:00Z"),
        ("format", 2),
    ],
)
def test_mistyped_terms_are_malformed(
    vendor: tuple[bytes, bytes], field: str, value: object
) -> None:
    text = _rearmour(signed(vendor), lambda e: e["terms"].__setitem__(field, value))
    with pytest.raises(LicenseCorrupt) as exc:
        verify(text, vendor)
    assert violation(exc) == "malformed"  # type: ignore[arg-type]


def test_altered_terms_have_a_bad_signature(vendor: tuple[bytes, bytes]) -> None:
    text = _rearmour(signed(vendor), lambda e: e["terms"].__setitem__("nodes_limit", 100))
    with pytest.raises(LicenseCorrupt) as exc:
        verify(text, vendor)
    assert violation(exc) == "bad_signature"  # type: ignore[arg-type]


def test_another_vendors_license_has_a_bad_signature(vendor: tuple[bytes, bytes]) -> None:
    forger = generate_key_pair()
    with pytest.raises(LicenseCorrupt) as exc:
        verify(signed(forger), vendor)
    assert violation(exc) == "bad_signature"  # type: ignore[arg-type]
    assert "does not verify" in exc.value.message


def test_no_trusted_key_is_a_bad_signature_that_says_so(vendor: tuple[bytes, bytes]) -> None:
    with pytest.raises(LicenseCorrupt) as exc:
        verify_license_text(signed(vendor), [], CLUSTER, NOW, 1)
    assert violation(exc) == "bad_signature"  # type: ignore[arg-type]
    assert "license_public_keys" in exc.value.message
    with pytest.raises(LicenseCorrupt) as exc:
        verify_license_text(signed(vendor), ["/no/such/key.pem"], CLUSTER, NOW, 1)
    assert "/no/such/key.pem" in exc.value.message


def test_any_trusted_key_may_verify(vendor: tuple[bytes, bytes], tmp_path: Path) -> None:
    other = generate_key_pair()
    key_file = tmp_path / "vendor.pub"
    key_file.write_bytes(vendor[1])
    keys = [other[1].decode(), "/no/such/file", str(key_file)]
    assert verify_license_text(signed(vendor), keys, CLUSTER, NOW, 1).owner == "Acme"
    loaded, problems = load_public_keys(keys)
    assert len(loaded) == 2
    assert problems == [problems[0]] and "/no/such/file" in problems[0]


@pytest.mark.parametrize(
    ("changes", "kw", "expected"),
    [
        ({"expiration_date": NOW}, {}, "expired"),
        ({"activation_date": NOW + timedelta(seconds=1)}, {}, "not_yet_valid"),
        ({"cluster_name": "c2.example.com"}, {}, "cluster_name_mismatch"),
        ({"nodes_limit": 3}, {"node_count": 4}, "nodes_limit_exceeded"),
        ({"shards_limit": 10}, {"shard_count": 11}, "shards_limit_exceeded"),
    ],
)
def test_violated_terms(
    vendor: tuple[bytes, bytes], changes: dict[str, object], kw: dict[str, object], expected: str
) -> None:
    with pytest.raises(InvalidLicense) as exc:
        verify(signed(vendor, **changes), vendor, **kw)
    assert not isinstance(exc.value, LicenseCorrupt)
    assert exc.value.http_status == 406
    assert violation(exc) == expected
    body = error_body(exc.value)
    assert body["error_code"] == "invalid_license"
    assert body["error_details"]["violation"] == expected


def test_limits_at_the_edge_and_zero_means_no_limit(vendor: tuple[bytes, bytes]) -> None:
    assert verify(signed(vendor), vendor, node_count=3, shard_count=10)
    unlimited = signed(vendor, nodes_limit=0, shards_limit=0)
    assert verify(unlimited, vendor, node_count=1000, shard_count=10**6)


def test_join_check() -> None:
    record = LicenseRecord(
        activation_date="2025-05-01T00:00:00Z",
        expiration_date="2025-07-01T00:00:00Z",
        nodes_limit=3,
        shards_limit=4,
    )
    check_license_for_join(record, 2, NOW)
    with pytest.raises(InvalidLicense) as exc:
        check_license_for_join(record, 3, NOW)
    assert violation(exc) == "nodes_limit_exceeded"
    with pytest.raises(InvalidLicense) as exc:
        check_license_for_join(record, 1, datetime(2025, 7, 1, tzinfo=UTC))
    assert violation(exc) == "expired"
    with pytest.raises(InvalidLicense) as exc:
        check_license_for_join(record, 1, datetime(2025, 4, 1, tzinfo=UTC))
    assert violation(exc) == "not_yet_valid"
    trial = trial_license(cluster_name=CLUSTER, activated=NOW)
    check_license_for_join(trial, 100, NOW)
    check_license_for_join(trial.changed(nodes_limit=None), 100, NOW)
    with pytest.raises(InvalidLicense) as exc:
        check_license_for_join(LicenseRecord(), 1, NOW)
    assert violation(exc) == "malformed"


def test_public_license_adds_expired() -> None:
    trial = trial_license(cluster_name=CLUSTER, activated=NOW)
    shown = public_license(trial, NOW)
    assert shown["expired"] is False
    assert shown["shards_limit"] == 4 and shown["nodes_limit"] == 0
    assert shown["features"] == ["trial"]
    assert public_license(trial, NOW + timedelta(days=30))["expired"] is True


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("issue")(issue)
    app.command("keygen")(keygen)
    return app


def test_keygen_and_issue_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    private, public = tmp_path / "v.pem", tmp_path / "v.pub"
    result = runner.invoke(
        _cli(), ["keygen", "--out-private", str(private), "--out-public", str(public)]
    )
    assert result.exit_code == 0, result.output
    assert private.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(
        _cli(), ["keygen", "--out-private", str(private), "--out-public", str(public)]
    )
    assert again.exit_code == 2
    out = tmp_path / "acme.license"
    args = ["issue", "--key", str(private), "--owner", "Acme", "--cluster-name", CLUSTER]
    args += ["--days", "10", "--shards-limit", "8", "--nodes-limit", "2", "--features", "a, b"]
    result = runner.invoke(_cli(), [*args, "--activation", "2025-05-30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    read = read_license(out.read_text(), [str(public)])
    assert read.activation_date == datetime(2025, 5, 30, tzinfo=UTC)
    assert read.expiration_date == datetime(2025, 6, 9, tzinfo=UTC)
    assert (read.shards_limit, read.nodes_limit, read.features) == (8, 2, ("a", "b"))
    to_stdout = runner.invoke(_cli(), args)
    assert to_stdout.exit_code == 0
    assert to_stdout.stdout.startswith(LICENSE_START)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert read_license(to_stdout.stdout, [str(public)]).activation_date == today
    for bad in (["--days", "0"], ["--activation", "yesterday"], ["--key", str(public)]):
        result = runner.invoke(_cli(), [*args, *bad])
        assert result.exit_code == 2, bad
