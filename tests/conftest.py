"""Fixtures shared by every test directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.agents import ARTEFACTS, AgentFactory, close_and_check, module_agent_factory

if shutil.which("etcd") is None:
    raise pytest.UsageError("etcd is not on PATH: run the README's test command, which installs it")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def agents(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AgentFactory]:
    """Start real agents: `agents.start()`; stopped after the test, logs scanned for the
    "please report" marker, and their directories kept under test-artifacts/ on failure."""
    factory = AgentFactory(tmp_path / "agents")
    yield factory
    call_report = getattr(request.node, "report_call", None)
    failed = call_report is None or call_report.failed
    close_and_check(factory, failed=failed, artefacts=ARTEFACTS / request.node.name)


@pytest.fixture(scope="module")
def module_agents(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentFactory]:
    """Agents shared by the tests of one module (a cluster that costs seconds to make): stopped
    after the module's last test, logs scanned for the "please report" marker, directories kept
    under test-artifacts/<module> when a test of the module failed."""
    with module_agent_factory(request, tmp_path_factory, request.path.stem) as factory:
        yield factory
