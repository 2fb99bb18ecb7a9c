"""`cnm.client`, `cnm.client_errors` and the CLI's error rendering in-process, on canned
answers (httpx's MockTransport): both error shapes, transport failures, and the wait loop's
contract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cnm.cli.render import error_lines
from cnm.client import AsyncCnmClient, CnmClient
from cnm.client_errors import ApiError, BootstrapFailed, TlsVerifyFailed, Unreachable, WaitTimeout

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, **kw: Any) -> CnmClient:
    return CnmClient("http://node.test:8080", transport=httpx.MockTransport(handler), **kw)


def statuses(*states: dict[str, Any]) -> Handler:
    """Answers GET /v1/bootstrap with these statuses in turn, the last one for ever."""
    remaining = list(states)

    def handler(request: httpx.Request) -> httpx.Response:
        state = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return httpx.Response(200, json={"bootstrap_status": state, "local_node_info": {}})

    return handler


def test_error_outside_bootstrap_keeps_code_message_and_details() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"description": "bad JSON", "error_code": "invalid_schema", "line": 2, "column": 4}
        return httpx.Response(400, json=body)

    with pytest.raises(ApiError) as caught:
        client(handler).create_cluster({})
    error = caught.value
    assert (error.status, error.error_code, error.message) == (400, "invalid_schema", "bad JSON")
    assert error.details == {"line": 2, "column": 4}
    assert error_lines(error) == ["error: [invalid_schema] bad JSON", "  at line 2, column 4"]


def test_validate_406_reads_the_bootstrap_status_shape() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        body = {
            "state": "error",
            "error_code": "node_config_mismatch",
            "error_details": {
                "message": "settings differ",
                "mismatches": [{"field": "os_user", "cluster_value": "a", "node_value": "b"}],
                "retryable": False,
            },
        }
        return httpx.Response(406, json=body)

    with pytest.raises(ApiError) as caught:
        client(handler).validate("join_cluster", {"cluster": {"nodes": ["10.0.0.1"]}})
    assert seen == [{"action": "join_cluster", "cluster": {"nodes": ["10.0.0.1"]}}]
    lines = error_lines(caught.value)
    assert lines[0] == "error: [node_config_mismatch] settings differ"
    assert "    os_user: cluster a, this node b" in lines
    assert lines[-1] == "  retryable: no, change the request first"


def test_repair_details_say_what_to_do() -> None:
    error = ApiError(
        None,
        "repair_required",
        "the cluster has failed nodes",
        {"failed_nodes": [{"uid": 3, "rack_id": "r1"}], "replace_candidate": 3},
    )
    assert error_lines(error)[1:] == [
        "  failed nodes: node 3 (rack r1)",
        "  replace candidate: node 3 (join again with --replace-uid 3)",
    ]


def test_non_json_error_body_still_an_api_error() -> None:
    with pytest.raises(ApiError) as caught:
        client(lambda r: httpx.Response(502, text="Bad Gateway")).cluster()
    error = caught.value
    assert (error.status, error.error_code, error.message) == (502, "http_error", "Bad Gateway")


def test_transport_failures_are_unreachable_and_tls_says_what_to_use() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(Unreachable) as caught:
        client(refused).bootstrap_status()
    assert not isinstance(caught.value, TlsVerifyFailed)
    assert "Connection refused" in str(caught.value)

    def self_signed(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed", request=request)

    with pytest.raises(TlsVerifyFailed) as tls:
        client(self_signed).bootstrap_status()
    assert "--insecure" in tls.value.reason and "--ca-file" in tls.value.reason


def test_credentials_basic_or_jwt() -> None:
    headers: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json=[])

    client(handler, username="a@b.c", password="pw").nodes()
    client(handler, token="tok").nodes()
    client(handler).nodes()
    assert headers[0].startswith("Basic ")
    assert headers[1:] == ["JWT tok", ""]


def test_wait_reports_each_change_once_and_returns_on_completed() -> None:
    changes: list[str] = []
    document = client(
        statuses(
            {"state": "initiated", "phase": "checks"},
            {"state": "creating_cluster", "phase": "store"},
            {"state": "creating_cluster", "phase": "store"},
            {"state": "creating_cluster", "phase": "records"},
            {"state": "completed"},
        )
    ).wait_bootstrap(5, lambda d: changes.append(str(d["bootstrap_status"])), interval=0.001)
    assert document["bootstrap_status"]["state"] == "completed"
    assert len(changes) == 4


def test_wait_raises_bootstrap_failed_with_the_details() -> None:
    failing = statuses(
        {"state": "joining_cluster"},
        {
            "state": "error",
            "error_code": "rack_id_required",
            "error_details": {"message": "needs a rack", "current_rack_ids": ["r1", "r2"]},
        },
    )
    with pytest.raises(BootstrapFailed) as caught:
        client(failing).wait_bootstrap(5, interval=0.001)
    assert caught.value.status is None
    assert caught.value.error_code == "rack_id_required"
    assert caught.value.details == {"current_rack_ids": ["r1", "r2"]}
    assert error_lines(caught.value)[1] == "  rack ids in the cluster: r1, r2 (join with --rack-id)"


def test_wait_times_out_with_the_last_status() -> None:
    with pytest.raises(WaitTimeout) as caught:
        client(statuses({"state": "creating_cluster"})).wait_bootstrap(0.05, interval=0.01)
    assert caught.value.last is not None
    assert caught.value.last["bootstrap_status"]["state"] == "creating_cluster"


def test_async_client_waits_the_same_way() -> None:
    async def scenario() -> dict[str, Any]:
        transport = httpx.MockTransport(
            statuses({"state": "joining_cluster"}, {"state": "completed"})
        )
        async with AsyncCnmClient("http://node.test:8080", transport=transport) as node:
            return await node.wait_bootstrap(5, interval=0.001)

    assert asyncio.run(scenario())["bootstrap_status"]["state"] == "completed"
