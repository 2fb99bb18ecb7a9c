"""A one-node cluster shared by the CLI tests that only read from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.clikit import create_cluster_over_http, run_cnm
from harness.agents import Agent, AgentFactory


@pytest.fixture(scope="module")
def vendor_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A license signing key pair (private, public), made with `cnm license keygen`."""
    directory = tmp_path_factory.mktemp("vendor")
    private, public = directory / "vendor.pem", directory / "vendor.pub.pem"
    made = run_cnm("license", "keygen", "--out-private", str(private), "--out-public", str(public))
    assert made.code == 0, made
    return private, public


@pytest.fixture(scope="module")
def cluster(module_agents: AgentFactory, vendor_key: tuple[Path, Path]) -> Agent:
    """One agent in a one-node cluster that trusts `vendor_key` (module-wide: starting and
    creating costs seconds)."""
    agent = module_agents.start(env={"CNM_LICENSE_PUBLIC_KEYS": str(vendor_key[1])})
    create_cluster_over_http(agent)
    return agent
