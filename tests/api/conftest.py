"""The `node` fixture of the API tests: a node's API on its ASGI app (see harness.api_node)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.api_node import Node, node_config, running_node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(node_config(tmp_path)) as running:
        yield running
