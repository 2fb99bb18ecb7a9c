"""Fixtures shared by every test directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.agents import AgentFactory

ARTEFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

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
    reports = factory.close(failed=failed, artefacts=ARTEFACTS / request.node.name)
    if reports:
        pytest.fail("agent logs contain the please-report marker: " + "; ".join(reports))
