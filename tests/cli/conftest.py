"""A one-node cluster shared by the CLI tests that only read from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.clikit import create_cluster_over_http, run_cnm
from harness.agents import Agent, AgentFactory

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def vendor_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A licence signing key pair (private, public), made with `cnm license keygen`."""
    directory = tmp_path_factory.mktemp("vendor")
    private, public = directory / "vendor.pem", directory / "vendor.pub.pem"
    made = run_cnm("license", "keygen", "--out-private", str(private), "--out-public", str(public))
    assert made.code == 0, made
    return private, public


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, vendor_key: tuple[Path, Path]
) -> Iterator[Agent]:
    """One agent in a one-node cluster that trusts `vendor_key` (module-wide: starting and
    creating costs seconds)."""
    factory = AgentFactory(tmp_path_factory.mktemp("cli-cluster"))
    agent = factory.start(env={"CNM_LICENSE_PUBLIC_KEYS": str(vendor_key[1])})
    create_cluster_over_http(agent)
    yield agent
    reports = factory.close(failed=False, artefacts=ARTEFACTS / "cli-cluster")
    assert not reports, reports
