"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from harness.secured_etcd import Secured, secured_etcd


@pytest_asyncio.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    """A one-member etcd with authentication on (harness/secured_etcd.py)."""
    async with secured_etcd(tmp_path) as setup:
        yield setup
