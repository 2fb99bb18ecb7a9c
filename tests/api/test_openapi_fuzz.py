"""Schemathesis, from the node's own /v1/openapi.json, against a fresh node and a bootstrapped one.

Every generated request (valid and invalid bodies, path parameters, both generation modes) must
get an answer the document describes: a documented status code, a documented content type, a
body of the documented schema, the documented headers; and no 5xx except the documented 503s
(`no_cluster` before bootstrap). The default run sends at least 1,000 requests; the
`schemathesis_long` marker (run by scripts/test.sh as a second pytest invocation) 5,000.

How state is handled (tests/harness/fuzz.py): on the fresh node, bootstrap actions are accepted
but held (the state becomes `initiated`), and the node is replaced after each accepted POST so
every example sees a fresh node; running the actions is the business of the bootstrap tests. On
the bootstrapped node (memory store, signed in as the admin with Basic credentials), every write
really happens; the node is replaced only when an example changed or deleted the admin itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from schemathesis import Case

from cnm.api.bodies import path_uid
from harness.agents import basic
from harness.api_node import bootstrapped_node, node_config, running_node
from harness.bodies import ADMIN
from harness.fuzz import FuzzTarget, fuzz_operations, fuzz_target, held, load_schema

# Requests per node: 2 x 500 = 1,000 by default, 2 x 2,500 = 5,000 long.
DEFAULT_REQUESTS = 500
LONG_REQUESTS = 2_500
ADMIN_UID = 1


def _fuzz(target: FuzzTarget, requests: int) -> None:
    fuzz_operations(load_schema(target), target.run, requests=requests)
    # Hypothesis may stop early when it runs out of distinct examples; it must not here.
    assert target.requests >= requests, target.requests


def _accepted_bootstrap(case: Case, response: httpx.Response) -> bool:
    return case.path == "/v1/bootstrap/{action}" and response.status_code == 200


def _changed_admin(case: Case, response: httpx.Response) -> bool:
    if case.path != "/v1/users/{uid}" or case.method not in ("PUT", "DELETE"):
        return False
    uid = path_uid(str((case.path_parameters or {}).get("uid", "")))
    return response.status_code == 200 and uid == ADMIN_UID


def _fresh(tmp_path: Path, requests: int) -> FuzzTarget:
    def make(directory: Path) -> Any:
        return held(running_node(node_config(directory)))

    with fuzz_target(make, tmp_path, needs_fresh_node=_accepted_bootstrap) as target:
        _fuzz(target, requests)
    return target


def _bootstrapped(tmp_path: Path, requests: int) -> FuzzTarget:
    def make(directory: Path) -> Any:
        return bootstrapped_node(node_config(directory))

    with fuzz_target(
        make, tmp_path, headers=basic(*ADMIN), needs_fresh_node=_changed_admin
    ) as target:
        _fuzz(target, requests)
    return target


def test_fuzz_fresh_node(tmp_path: Path) -> None:
    target = _fresh(tmp_path, DEFAULT_REQUESTS)
    # Before bootstrap the cluster routes answer 503 `no_cluster` and bootstrap POSTs are taken.
    assert target.statuses.get(503, 0) > 0 and target.statuses.get(200, 0) > 0, target.statuses


def test_fuzz_bootstrapped_node(tmp_path: Path) -> None:
    target = _bootstrapped(tmp_path, DEFAULT_REQUESTS)
    # Signed in as the admin: most requests are served (not all refused at the door).
    assert target.statuses.get(200, 0) > target.requests // 10, target.statuses


@pytest.mark.schemathesis_long
def test_fuzz_fresh_node_long(tmp_path: Path) -> None:
    _fresh(tmp_path, LONG_REQUESTS)


@pytest.mark.schemathesis_long
def test_fuzz_bootstrapped_node_long(tmp_path: Path) -> None:
    _bootstrapped(tmp_path, LONG_REQUESTS)
