"""A short Schemathesis run against a real agent over HTTP: fresh, then after a real create
(real etcd, Basic credentials). The long runs are in-process (tests/api/test_openapi_fuzz.py);
this one checks that the document the agent serves describes what it answers on the wire too.

On the fresh agent the bootstrap actions are left out: an accepted one starts a real bootstrap
(the in-process run covers their answers). On the bootstrapped one, changes to the admin the
run signs in with are left out (an agent cannot be replaced per example cheaply).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import schemathesis
from hypothesis import assume
from schemathesis import Case

from cnm.api.bodies import path_uid
from harness.agents import AgentFactory, basic
from harness.bodies import ADMIN, create_body
from harness.fuzz import CHECKS, Prepared, fuzz_operations, no_server_error

pytestmark = pytest.mark.cluster

REQUESTS = 150  # per agent state


def _run(
    client: httpx.Client,
    base_url: str,
    headers: dict[str, str],
    skip: Callable[[Case], bool],
    counter: list[int],
) -> Callable[[Case], None]:
    def run(case: Case) -> None:
        assume(not skip(case))
        request = Prepared.of(case, base_url, headers)
        response = client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        counter.append(response.status_code)
        case.validate_response(response, checks=CHECKS, transport_kwargs=request.kwargs)
        no_server_error(case, response)

    return run


def _changes_admin(case: Case) -> bool:
    uid = path_uid(str((case.path_parameters or {}).get("uid", "")))
    return case.path == "/v1/users/{uid}" and case.method != "GET" and uid == 1


def test_fuzz_a_real_agent_fresh_then_bootstrapped(agents: AgentFactory) -> None:
    with httpx.Client(timeout=30.0) as client:
        _fuzz_agent(agents, client)


def _fuzz_agent(agents: AgentFactory, client: httpx.Client) -> None:
    agent = agents.start()
    document = httpx.get(agent.http_url + "/v1/openapi.json", timeout=10.0).json()
    schema = schemathesis.openapi.from_dict(document)

    fresh: list[int] = []
    fuzz_operations(
        schema,
        _run(client, agent.http_url, {}, lambda case: False, fresh),
        requests=REQUESTS,
        include=lambda operation: operation.path != "/v1/bootstrap/{action}",
    )
    assert agent.status()["bootstrap_status"]["state"] == "idle"
    assert len(fresh) >= REQUESTS // 2 and 503 in fresh, fresh

    assert agent.post("/v1/bootstrap/create_cluster", create_body("c1.example.com")).is_success
    agent.wait_state("completed", "error", auth=ADMIN)
    done: list[int] = []
    fuzz_operations(
        schema, _run(client, agent.http_url, basic(*ADMIN), _changes_admin, done), requests=REQUESTS
    )
    assert len(done) >= REQUESTS // 2 and 200 in done, done
    assert agent.get("/v1/users/1", auth=ADMIN).status_code == 200
