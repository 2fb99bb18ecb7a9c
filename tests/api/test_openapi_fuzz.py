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
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cnm.api.bodies import path_uid
from harness.agents import basic
from harness.api_node import bootstrapped_node, node_config, running_node
from harness.bodies import ADMIN
from harness.fuzz import FuzzTarget, fuzz_target, held, load_schema

CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# The only 5xx the API may answer: the documented 503s (no cluster yet; store not reachable).
ALLOWED_5XX = {503: {"no_cluster", "store_unavailable"}}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Requests per node: 2 x 500 = 1,000 by default, 2 x 2,500 = 5,000 long.
DEFAULT_REQUESTS = 500
LONG_REQUESTS = 2_500
ADMIN_UID = 1


def _no_server_error(case: Case, response: httpx.Response) -> None:
    if response.status_code < 500:
        return
    allowed = ALLOWED_5XX.get(response.status_code, set())
    code = response.json().get("error_code") if response.content else None
    assert code in allowed, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    )


def _fuzz(target: FuzzTarget, requests: int) -> None:
    """Fuzz every operation in both modes, `requests` in all, spread evenly over the
    operations that have something to vary (a body or a path parameter); an operation with
    nothing to vary is sent once."""
    schema = load_schema(target)
    operations = [result.ok() for result in schema.get_all_operations()]
    varied = [op for op in operations if list(op.body) or list(op.path_parameters)]
    constant = len(operations) - len(varied)
    examples = -(-(requests - constant) // (len(varied) * len(MODES)))
    for operation in operations:
        for mode in MODES if operation in varied else MODES[:1]:

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: Case) -> None:
                target.run(case, CHECKS)

            fuzz()
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
        target.on_response = _no_server_error
        _fuzz(target, requests)
    return target


def _bootstrapped(tmp_path: Path, requests: int) -> FuzzTarget:
    def make(directory: Path) -> Any:
        return bootstrapped_node(node_config(directory))

    with fuzz_target(
        make, tmp_path, headers=basic(*ADMIN), needs_fresh_node=_changed_admin
    ) as target:
        target.on_response = _no_server_error
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
