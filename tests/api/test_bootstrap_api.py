"""The bootstrap API on its ASGI app (issue 2, §4, §6 and §7): bad input of every kind, the
error shapes, validate, the asynchronous run up to `error`, and auth before and after bootstrap.

Every JSON answer is also checked to be compact (`{"a":1}`), typed `application/json`, and free
of tracebacks. Bad input must leave the state as it was: still `idle` with no status file
written, or the status file byte for byte unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cnm.json_body import MAX_BODY_BYTES
from cnm.node.data_dir import DataDir, default_ccs_path, etcd_member_dir
from harness.addresses import claim_address, release_address
from harness.agents import basic
from harness.api_node import Node, node_config, running_node
from harness.bodies import ADMIN, create_body
from harness.doc_examples import DOC_CREATE_BODY, DOC_JOIN_BODY

ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
CREATE = "/v1/bootstrap/create_cluster"
VALIDATE = "/v1/bootstrap/validate/create_cluster"


def json_of(response: httpx.Response) -> Any:
    """The body of a JSON answer, after checking what every JSON answer must be."""
    assert response.headers["content-type"] == "application/json"
    assert b"Traceback" not in response.content
    document = json.loads(response.content)
    # Re-encoded compactly in the same key order, it must be the very bytes that were sent.
    compact = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    assert response.content == compact.encode(), "not compact JSON"
    return document


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = json_of(response)
    assert body["error_code"] == code, body
    assert isinstance(body["description"], str) and body["description"]
    return body


def bootstrap_406(response: httpx.Response, code: str) -> dict[str, Any]:
    """validate's 406: a bootstrap_status object in error, and nothing else."""
    assert response.status_code == 406, response.text
    body: dict[str, Any] = json_of(response)
    assert set(body) == {"state", "error_code", "error_details"}, body
    assert body["state"] == "error"
    assert body["error_code"] == code, body
    assert isinstance(body["error_details"]["message"], str)
    return body


def assert_empty_200(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.content == b""


async def assert_untouched(node: Node, before: bytes | None = None) -> None:
    """The state is what it was: idle without a status file, or the same file byte for byte."""
    if before is None:
        assert await node.bootstrap_status() == {"state": "idle"}
        assert node.status_file_bytes() is None
    else:
        assert node.status_file_bytes() == before


async def fail_semantically(node: Node) -> dict[str, Any]:
    """Take the node to `error` with a config_error (no etcd needed)."""
    assert_empty_200(await node.client.post(CREATE, json=create_body(name="bad_name")))
    return await node.wait_state("error")


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[None]:
    """Make `path` unwritable for this process, root included (the immutable attribute)."""
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)  # enough for anyone but root
        undo = ["chmod", "0755", str(path)]
    elif not shutil.which("chattr"):
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    else:
        # root writes through mode bits; the immutable attribute stops it for real.
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"chattr +i not supported here: {made.stderr.decode().strip()}")
        undo = ["chattr", "-i", str(path)]
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


# --- GET /v1/bootstrap --------------------------------------------------------------------------


async def test_get_bootstrap_before_anything(node: Node) -> None:
    response = await node.client.get("/v1/bootstrap")
    assert response.status_code == 200
    body = json_of(response)
    assert body["bootstrap_status"] == {"state": "idle"}
    info = body["local_node_info"]
    assert info["uid"] == ""
    assert info["persistent_storage_path"] == str(node.config.persistent_path)
    assert info["ephemeral_storage_path"] == str(node.config.ephemeral_path)
    assert info["available_addresses"][0]["address"] == node.config.addr
    assert info["available_addrs"] == info["available_addresses"]
    assert node.status_file_bytes() is None  # reading the status writes nothing


async def test_typo_alias_boostrap_answers_the_same(node: Node) -> None:
    right = json_of(await node.client.get("/v1/bootstrap"))
    typo_response = await node.client.get("/v1/boostrap")
    assert typo_response.status_code == 200
    typo = json_of(typo_response)
    assert typo["bootstrap_status"] == right["bootstrap_status"]
    for body in (typo, right):
        body["local_node_info"].pop("uptime")
    assert typo["local_node_info"] == right["local_node_info"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"null", "application/json"), (b"{}", "application/json"), (b"not json", "text/plain")],
    ids=["null", "object", "garbage"],
)
async def test_get_with_a_body_ignores_it(node: Node, content: bytes, content_type: str) -> None:
    # Ansible's uri module with body_format: json sends `null` on a GET.
    response = await node.client.request(
        "GET", "/v1/bootstrap", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == 200
    assert json_of(response)["bootstrap_status"] == {"state": "idle"}


# --- routing: 404, 405, 503 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/index.html"),  # "/" is the web console (tests/api/test_web_routes.py)
        ("GET", "/v1"),
        ("GET", "/v1/nope"),
        ("GET", "/bootstrap"),  # the old docs' path without /v1: not served (a choice)
        ("POST", "/bootstrap/create_cluster"),
        ("POST", "/v1/bootstrap/create_cluster/extra"),
        ("GET", "/v2/bootstrap"),
    ],
)
async def test_unknown_paths_are_404_json(node: Node, method: str, path: str) -> None:
    response = await node.client.request(method, path, json=create_body())
    body = error_of(response, 404, "not_found")
    assert path in body["description"]
    await assert_untouched(node)


@pytest.mark.parametrize("path", ["/v1/bootstrap/frobnicate", "/v1/bootstrap/validate/frobnicate"])
@pytest.mark.parametrize("body", [json.dumps(create_body()).encode(), b"{not json"])
async def test_unknown_action_is_404(node: Node, path: str, body: bytes) -> None:
    response = await node.client.post(path, content=body)
    error = error_of(response, 404, "not_found")
    assert "'frobnicate'" in error["description"]
    assert "create_cluster" in error["description"]  # says what the actions are
    await assert_untouched(node)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/bootstrap", "GET"),
        ("PUT", "/v1/bootstrap", "GET"),
        ("POST", "/v1/bootstrap", "GET"),
        ("POST", "/v1/boostrap", "GET"),
        ("GET", CREATE, "POST"),
        ("PUT", CREATE, "POST"),
        ("GET", VALIDATE, "POST"),
        ("DELETE", VALIDATE, "POST"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    node: Node, method: str, path: str, allowed: str
) -> None:
    response = await node.client.request(method, path)
    body = error_of(response, 405, "method_not_allowed")
    assert allowed in [m.strip() for m in response.headers["allow"].split(",")]
    assert method in body["description"] and path in body["description"]
    await assert_untouched(node)


CLUSTER_PATHS = [
    "/v1/cluster",
    "/v1/cluster/check",
    "/v1/nodes",
    "/v1/nodes/1",
    "/v1/nodes/status",
    "/v1/license",
    "/v1/users",
    "/v1/users/1",
]


@pytest.mark.parametrize("path", CLUSTER_PATHS)
@pytest.mark.parametrize("auth", [None, ADMIN], ids=["anonymous", "with-credentials"])
async def test_cluster_routes_before_bootstrap_are_503_no_cluster(
    node: Node, path: str, auth: tuple[str, str] | None
) -> None:
    response = await node.client.get(path, headers=basic(*auth) if auth else {})
    body = error_of(response, 503, "no_cluster")
    assert "create_cluster" in body["description"]  # says what to do about it


# --- authorization before bootstrap -------------------------------------------------------------

ANY_AUTHORIZATION = [
    basic(*ADMIN)["Authorization"],
    basic("someone", "wrong")["Authorization"],
    "Basic !!!not-base64!!!",
    "Bearer abc.def.ghi",
    "JWT abc.def.ghi",
    "",
]


@pytest.mark.parametrize("header", ANY_AUTHORIZATION)
async def test_authorization_is_ignored_before_bootstrap(node: Node, header: str) -> None:
    headers = {"Authorization": header}
    response = await node.client.get("/v1/bootstrap", headers=headers)
    assert response.status_code == 200
    assert_empty_200(await node.client.post(VALIDATE, json=create_body(), headers=headers))
    assert_empty_200(
        await node.client.post(CREATE, json=create_body(name="bad_name"), headers=headers)
    )
    status = await node.wait_state("error", headers=headers)
    assert status["error_code"] == "config_error"


# --- §7 bad input: 400, state unchanged ---------------------------------------------------------

NOT_AN_OBJECT = [
    ("array", b"[]", "got array"),
    ("array-of-body", json.dumps([create_body()]).encode(), "got array"),
    ("string", b'"create_cluster"', "got string"),
    ("number", b"42", "got number"),
    ("null", b"null", "got null"),
    ("boolean", b"true", "got boolean"),
]
NOT_JSON = [
    ("empty", b"", "empty"),
    ("whitespace", b"  \n\t ", "empty"),
    ("not-utf8", b'{"cluster": {"name": "caf\xe9"}}', "not valid UTF-8"),
    ("utf16", json.dumps(create_body()).encode("utf-16"), "not valid UTF-8"),
    ("trailing-comma", b'{"action": "create_cluster",}', "line 1, column 29"),
    ("single-quotes", b"{'action': 'create_cluster'}", "line 1, column 2"),
    ("python-literal", b'{"cluster": {"wait_command": True}}', "line 1, column 30"),
    ("unterminated", b'{"cluster": {"name": "c1', "line 1"),
    ("nan", b'{"retry_time": NaN}', "NaN is not a JSON number"),
    ("infinity", b'{"max_retries": -Infinity}', "-Infinity is not a JSON number"),
    ("huge-number", b'{"max_retries": ' + b"9" * 5000 + b"}", "too many digits"),
    ("deep-array", b"[" * 10_000 + b"]" * 10_000, "nested deeper than 64"),
    ("deep-object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested deeper than 64"),
    ("deep-unbalanced", b"[" * 10_000, "nested deeper than 64"),
    ("deep-inside-body", b'{"cluster": {"nodes": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}", "64"),
    ("second-document", b"{} {}", "extra data"),
    # JSON, but a number Python reads as infinity: a wrong type, named.
    ("uid-1e400", b'{"node": {"identity": {"uid": 1e400}}}', "node.identity.uid: expected an"),
]
WRONG_TYPES = [
    ("name-number", {"cluster": {"name": 5}}, ["cluster.name"], "expected a string, got 5"),
    ("cluster-string", {"cluster": "c1"}, ["cluster"], "cluster: expected an object"),
    ("password-number", {"credentials": {"password": 12345678}}, ["credentials.password"], ""),
    ("uid-string", {"node": {"identity": {"uid": "1"}}}, ["node.identity.uid"], "integer"),
    ("bool-string", {"cluster": {"wait_command": "yes"}}, ["cluster.wait_command"], "boolean"),
    ("int-float", {"node": {"limits": {"max_listeners": 1.0}}}, ["node.limits.max_listeners"], ""),
    ("port-range", {"cnm_https_port": 70000}, ["cnm_https_port"], "between 1 and 65535"),
    ("nodes-items", {"cluster": {"nodes": [1]}}, ["cluster.nodes"], "item 0"),
    ("driver", {"node": {"bigstore_driver": "ext4"}}, ["node.bigstore_driver"], "'rocksdb'"),
    ("suffixes-object", {"dns_suffixes": {"name": "x"}}, ["dns_suffixes"], "a list"),
    (
        "several",
        {"cluster": {"name": 5}, "license": 7, "policy": {"rack_aware": "true"}},
        ["cluster.name", "license", "policy.rack_aware"],
        "",
    ),
]


def _bad_input_cases() -> list[Any]:
    cases = [pytest.param(raw, text, id=name) for name, raw, text in NOT_AN_OBJECT + NOT_JSON]
    cases += [
        pytest.param(json.dumps({**create_body(), **body}).encode(), text, id=name)
        for name, body, _, text in WRONG_TYPES
    ]
    return cases


@pytest.mark.parametrize("path", [CREATE, VALIDATE])
@pytest.mark.parametrize(("raw", "text"), _bad_input_cases())
async def test_bad_input_is_400_and_changes_nothing(
    node: Node, path: str, raw: bytes, text: str
) -> None:
    response = await node.client.post(path, content=raw)
    body = error_of(response, 400, "invalid_schema")
    assert text in body["description"]
    await assert_untouched(node)


@pytest.mark.parametrize(
    ("name", "body", "fields", "text"),
    [pytest.param(*case, id=case[0]) for case in WRONG_TYPES],
)
async def test_wrong_types_name_each_field(
    node: Node, name: str, body: dict[str, Any], fields: list[str], text: str
) -> None:
    response = await node.client.post(CREATE, json={**create_body(), **body})
    error = error_of(response, 400, "invalid_schema")
    assert error["fields"] == fields
    for field in fields:
        assert f"{field}: expected" in error["description"]
    if name == "password-number":
        assert "12345678" not in response.text  # a password sent as a number is not echoed


async def test_bad_input_in_error_state_leaves_the_record(node: Node) -> None:
    await fail_semantically(node)
    before = node.status_file_bytes()
    assert before is not None
    for raw in (b"[]", b"", b"{", b"[" * 10_000):
        error_of(await node.client.post(CREATE, content=raw), 400, "invalid_schema")
    await assert_untouched(node, before)
    assert (await node.bootstrap_status())["error_code"] == "config_error"


@pytest.mark.parametrize(
    ("example", "line", "column", "comma_line"),
    [(DOC_JOIN_BODY, 10, 11, 9), (DOC_CREATE_BODY, 11, 11, 10)],
    ids=["join", "create"],
)
@pytest.mark.parametrize("path", [CREATE, VALIDATE])
async def test_documentation_examples_point_at_the_missing_comma(
    node: Node, example: str, line: int, column: int, comma_line: int, path: str
) -> None:
    response = await node.client.post(path, content=example.encode())
    body = error_of(response, 400, "invalid_schema")
    assert (body["line"], body["column"]) == (line, column)
    assert f"line {line}, column {column}" in body["description"]
    assert f"missing at the end of line {comma_line}" in body["description"]
    await assert_untouched(node)


async def test_documentation_create_example_with_commas_fixed_step_by_step(node: Node) -> None:
    # Each fix moves the 400 to the next missing comma; with all fixed, the body parses and the
    # semantic checks answer (the example's address is not one of this machine).
    lines = DOC_CREATE_BODY.splitlines()
    reported = []
    for _ in range(5):
        response = await node.client.post(VALIDATE, content="\n".join(lines).encode())
        if response.status_code != 400:
            break
        body = error_of(response, 400, "invalid_schema")
        reported.append(body["line"])
        comma_line = int(re.findall(r"end of line (\d+)", body["description"])[0])
        lines[comma_line - 1] += ","
    assert reported == [11, 15]
    failure = bootstrap_406(response, "config_error")
    assert failure["error_details"]["fields"] == ["node.identity.addr"]
    await assert_untouched(node)


async def test_never_a_500_on_truncated_or_mangled_bodies(node: Node) -> None:
    raw = json.dumps(create_body(node={"identity": {"rack_id": "r1"}}), indent=1).encode()
    bodies = [raw[:cut] for cut in range(len(raw))]
    chance = random.Random(20240601)
    for _ in range(150):
        mangled = bytearray(raw)
        for _ in range(chance.randint(1, 4)):
            mangled[chance.randrange(len(mangled))] = chance.randrange(256)
        bodies.append(bytes(mangled))
    for body in bodies:
        response = await node.client.post(VALIDATE, content=body)
        assert response.status_code in (200, 400, 406), (body, response.text)
        if response.status_code != 200:
            json_of(response)
    await assert_untouched(node)


# --- size limit ---------------------------------------------------------------------------------

TWO_MB = 2 * 1024 * 1024


def padded(size: int) -> bytes:
    """A valid create body of exactly `size` bytes (JSON allows any amount of whitespace)."""
    raw = json.dumps(create_body()).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


@pytest.mark.parametrize("path", [CREATE, VALIDATE])
async def test_two_megabytes_with_content_length_is_413(node: Node, path: str) -> None:
    response = await node.client.post(path, content=padded(TWO_MB))
    body = error_of(response, 413, "payload_too_large")
    assert body["limit"] == MAX_BODY_BYTES
    await assert_untouched(node)


@pytest.mark.parametrize("path", [CREATE, VALIDATE])
async def test_two_megabytes_streamed_without_length_is_413(node: Node, path: str) -> None:
    chunk = b" " * 65536

    async def stream() -> AsyncIterator[bytes]:
        yield b'{"action": "create_cluster", "padding": "'
        for _ in range(TWO_MB // len(chunk)):
            yield chunk
        yield b'"}'

    response = await node.client.post(path, content=stream())
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    error_of(response, 413, "payload_too_large")
    await assert_untouched(node)


async def test_body_at_the_limit_is_accepted_one_more_byte_is_not(node: Node) -> None:
    assert_empty_200(await node.client.post(VALIDATE, content=padded(MAX_BODY_BYTES)))
    error_of(
        await node.client.post(VALIDATE, content=padded(MAX_BODY_BYTES + 1)),
        413,
        "payload_too_large",
    )
    await assert_untouched(node)


# --- validate -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        create_body(),
        create_body(license=""),
        create_body(name="a" * 59 + ".abcd"),  # 64 characters: the longest allowed
        {k: v for k, v in create_body().items() if k != "action"},  # the path decides
        create_body(flash_enabled=True, cluster={"name": "c1.example.com", "clobber": True}),
        create_body(node={"identity": {"addr": "127.0.0.1", "rack_id": None, "unknown": 1}}),
        create_body(credentials={"username": ADMIN[0], "password": "8chars!!"}),
    ],
    ids=["minimal", "empty-license", "name-64", "no-action", "unknown-fields", "nulls", "pw-8"],
)
async def test_validate_ok_is_empty_200_and_changes_nothing(
    node: Node, body: dict[str, Any]
) -> None:
    assert_empty_200(await node.client.post(VALIDATE, json=body))
    await assert_untouched(node)


async def test_validate_accepts_any_content_type_and_a_bom(node: Node) -> None:
    raw = json.dumps(create_body()).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends
    assert_empty_200(await node.client.post(VALIDATE, content=raw, headers=form))
    assert_empty_200(await node.client.post(VALIDATE, content=b"\xef\xbb\xbf" + raw))


SEMANTIC_ERRORS = [
    ("name-not-fqdn", create_body(name="bad_name.example.com"), "cluster.name", "valid FQDN"),
    ("name-65", create_body(name="a" * 60 + ".abcd"), "cluster.name", "at most 64"),
    ("name-missing", create_body(cluster={}), "cluster.name", "required"),
    (
        "password-short",
        create_body(credentials={"username": ADMIN[0], "password": "7chars!"}),
        "credentials.password",
        "at least 8",
    ),
    (
        "password-missing",
        create_body(credentials={"username": ADMIN[0]}),
        "credentials.password",
        "required",
    ),
    *[
        (
            f"username-{name}",
            create_body(credentials={"username": f"ad{char}min", "password": ADMIN[1]}),
            "credentials.username",
            "must not contain",
        )
        for name, char in (("amp", "&"), ("lt", "<"), ("gt", ">"), ("quote", '"'))
    ],
    (
        "both-credentials",
        create_body(credentials={"username": ADMIN[0], "password": ADMIN[1], "client_cert": "PEM"}),
        "credentials",
        "not both",
    ),
    ("action-differs", create_body(action="join_cluster"), "action", "'join_cluster'"),
    (
        "addr-not-local",
        create_body(node={"identity": {"addr": "203.0.113.77"}}),
        "node.identity.addr",
        "not an address of this machine",
    ),
    (
        "rack-aware-without-rack",
        create_body(policy={"rack_aware": True}),
        "node.identity.rack_id",
        "required when policy.rack_aware",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [pytest.param(body, field, text, id=name) for name, body, field, text in SEMANTIC_ERRORS],
)
async def test_validate_semantic_error_is_406_naming_the_field(
    node: Node, body: dict[str, Any], field: str, text: str
) -> None:
    failure = bootstrap_406(await node.client.post(VALIDATE, json=body), "config_error")
    message = failure["error_details"]["message"]
    assert message.startswith(f"{field}: ") or f"; {field}: " in message
    assert text in message
    assert field in failure["error_details"]["fields"]
    await assert_untouched(node)


async def test_validate_reports_every_problem_at_once(node: Node) -> None:
    body = create_body(name="-bad-", credentials={"username": "a<b", "password": "short"})
    failure = bootstrap_406(await node.client.post(VALIDATE, json=body), "config_error")
    assert failure["error_details"]["fields"] == [
        "cluster.name",
        "credentials.password",
        "credentials.username",
    ]


async def test_validate_in_error_state_changes_nothing(node: Node) -> None:
    await fail_semantically(node)
    before = node.status_file_bytes()
    assert_empty_200(await node.client.post(VALIDATE, json=create_body()))
    bootstrap_406(await node.client.post(VALIDATE, json=create_body(name="x_y")), "config_error")
    await assert_untouched(node, before)


# --- POST: the asynchronous run up to error -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [pytest.param(body, field, text, id=name) for name, body, field, text in SEMANTIC_ERRORS],
)
async def test_semantic_error_is_accepted_then_error_naming_the_field(
    node: Node, body: dict[str, Any], field: str, text: str
) -> None:
    assert_empty_200(await node.client.post(CREATE, json=body))
    status = await node.wait_state("error")
    assert set(status) == {"state", "start_time", "end_time", "error_code", "error_details"}
    assert status["error_code"] == "config_error"
    details = status["error_details"]
    assert details["message"].startswith(f"{field}: ") or f"; {field}: " in details["message"]
    assert text in details["message"]
    assert field in details["fields"]
    assert details["retryable"] is False
    assert ISO_Z.fullmatch(status["start_time"]) and ISO_Z.fullmatch(status["end_time"])
    assert status["start_time"] <= status["end_time"]
    on_disk = node.file_status()
    assert on_disk is not None
    assert (on_disk["state"], on_disk["error_code"]) == ("error", "config_error")
    assert on_disk["error_details"] == details


def _path_cases(tmp_path: Path) -> dict[str, tuple[dict[str, Any], str, str]]:
    """name -> (node.paths changes, the offending path, what the message says about it)."""
    missing = tmp_path / "missing" / "persist"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {
        "persistent-missing": (
            {"persistent_path": str(missing)},
            str(missing),
            "does not exist",
        ),
        "ephemeral-file": ({"ephemeral_path": str(a_file)}, str(a_file), "is not a directory"),
        "relative": ({"persistent_path": "var/opt/persist"}, "var/opt/persist", "not an absolute"),
        "ccs-missing": (
            {"ccs_persistent_path": str(missing)},
            str(missing),
            "does not exist",
        ),
    }


PATH_CASES = ["persistent-missing", "ephemeral-file", "relative", "ccs-missing"]


@pytest.mark.parametrize("case", PATH_CASES)
async def test_validate_path_error_names_the_path(node: Node, tmp_path: Path, case: str) -> None:
    paths, path, text = _path_cases(tmp_path)[case]
    body = create_body(node={"paths": paths})
    failure = bootstrap_406(await node.client.post(VALIDATE, json=body), "path_error")
    details = failure["error_details"]
    assert path in details["message"] and text in details["message"]
    assert details["path"] == path
    assert details["field"] == f"node.paths.{next(iter(paths))}"
    await assert_untouched(node)


@pytest.mark.parametrize("case", PATH_CASES)
async def test_path_error_is_accepted_then_error_naming_the_path(
    node: Node, tmp_path: Path, case: str
) -> None:
    paths, path, text = _path_cases(tmp_path)[case]
    assert_empty_200(await node.client.post(CREATE, json=create_body(node={"paths": paths})))
    status = await node.wait_state("error")
    assert status["error_code"] == "path_error"
    assert path in status["error_details"]["message"]
    assert text in status["error_details"]["message"]
    assert status["error_details"]["path"] == path


async def test_read_only_path_is_a_path_error(node: Node, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    body = create_body(node={"paths": {"persistent_path": str(locked)}})
    with read_only_dir(locked):
        failure = bootstrap_406(await node.client.post(VALIDATE, json=body), "path_error")
        assert_empty_200(await node.client.post(CREATE, json=body))
        status = await node.wait_state("error")
    for details in (failure["error_details"], status["error_details"]):
        assert details["message"].startswith(f"node.paths.persistent_path: {locked} ")
        assert "not writable" in details["message"]
    assert status["error_code"] == "path_error"


async def test_flash_path_checked_only_when_flash_is_enabled(node: Node, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-flash")
    off = create_body(node={"paths": {"bigstore_path": missing}})
    assert_empty_200(await node.client.post(VALIDATE, json=off))
    on = create_body(node={"paths": {"bigstore_path": missing}, "bigstore_enabled": True})
    failure = bootstrap_406(await node.client.post(VALIDATE, json=on), "path_error")
    assert failure["error_details"]["path"] == missing


async def test_default_paths_from_the_agent_config_are_checked(tmp_path: Path) -> None:
    config = node_config(tmp_path, persistent_path=tmp_path / "gone")
    async with running_node(config) as node:
        failure = bootstrap_406(await node.client.post(VALIDATE, json=create_body()), "path_error")
        assert failure["error_details"]["path"] == str(tmp_path / "gone")


# --- the state machine: 409, starting over ------------------------------------------------------


async def test_post_while_in_progress_is_409(node: Node) -> None:
    node.spawner.hold = True  # accepted, but the run has not started
    assert_empty_200(await node.client.post(CREATE, json=create_body(name="bad_name")))
    status = await node.bootstrap_status()
    assert status["state"] == "initiated"
    assert ISO_Z.fullmatch(status["start_time"]) and "end_time" not in status
    on_disk = node.file_status()
    assert on_disk is not None and on_disk["state"] == "initiated"
    before = node.status_file_bytes()

    for body in (create_body(), create_body(name="bad_name")):
        response = await node.client.post(CREATE, json=body)
        error = error_of(response, 409, "bootstrap_in_progress")
        assert "in progress" in error["description"] and "initiated" in error["description"]
    # A body that is not even JSON is still a 400 first: the state is not looked at.
    error_of(await node.client.post(CREATE, content=b"["), 400, "invalid_schema")
    await assert_untouched(node, before)

    node.spawner.hold = False
    await node.spawner.release()
    assert (await node.bootstrap_status())["state"] == "error"
    # From error a new POST is accepted.
    assert_empty_200(await node.client.post(CREATE, json=create_body(name="other_bad")))
    status = await node.wait_state("error")
    assert "other_bad" in status["error_details"]["message"]


async def test_concurrent_posts_only_one_is_accepted(node: Node) -> None:
    node.spawner.hold = True
    responses = await asyncio.gather(
        *(node.client.post(CREATE, json=create_body(name="bad_name")) for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    assert len(node.spawner.held) == 1
    node.spawner.hold = False
    await node.spawner.release()


async def test_post_from_error_starts_over_with_the_new_request(node: Node) -> None:
    first = await fail_semantically(node)
    assert "bad_name" in first["error_details"]["message"]
    assert_empty_200(
        await node.client.post(
            CREATE, json=create_body(credentials={"username": ADMIN[0], "password": "short"})
        )
    )
    second = await node.wait_state("error")
    # The new attempt's error, not the old one; and its own start time.
    assert second["error_details"]["fields"] == ["credentials.password"]
    assert second["start_time"] >= first["start_time"]


def failing_etcd(tmp_path: Path) -> Path:
    """An 'etcd' that creates its data dir (as a real one does at once) and exits 1."""
    script = tmp_path / "failing-etcd"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do case "$arg" in --data-dir=*) mkdir -p "${arg#--data-dir=}";; '
        "esac; done\n"
        "echo 'failing etcd: exiting on purpose' >&2\n"
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
async def failed_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node whose create failed after making its certificates and the etcd member dir."""
    config = node_config(tmp_path, etcd_binary=str(failing_etcd(tmp_path)))
    async with running_node(config) as node:
        assert_empty_200(await node.client.post(CREATE, json=create_body()))
        status = await node.wait_state("error")
        assert status["error_code"] == "internal_error"
        assert "etcd exited with code 1" in status["error_details"]["message"]
        assert "failing etcd: exiting on purpose" in status["error_details"]["message"]
        assert status["error_details"]["phase"] == "store"
        assert status["error_details"]["retryable"] is True
        yield node


async def test_post_from_error_first_removes_what_the_attempt_left(failed_node: Node) -> None:
    node = failed_node
    on_disk = node.file_status()
    assert on_disk is not None
    left = [Path(p) for p in on_disk["created_paths"]]
    tls_dir = DataDir(node.config.data_dir).cluster_tls.directory
    member_dir = etcd_member_dir(default_ccs_path(node.config.persistent_path))
    assert left == [tls_dir, member_dir]
    assert tls_dir.is_dir() and member_dir.is_dir()

    # A retry that fails at once, before creating anything: what is on disk is what the
    # cleanup left, i.e. nothing.
    assert_empty_200(await node.client.post(CREATE, json=create_body(name="bad_name")))
    await node.wait_state("error")
    assert not tls_dir.exists()
    assert not member_dir.exists()
    on_disk = node.file_status()
    assert on_disk is not None and on_disk["created_paths"] == []


async def test_retry_from_error_is_not_blocked_by_the_failed_attempts_store_data(
    failed_node: Node,
) -> None:
    # The failed attempt left an etcd member dir, which a fresh create refuses as "another
    # cluster's data" (path_error); the retry removes it first, so it gets further than that.
    node = failed_node
    assert_empty_200(await node.client.post(CREATE, json=create_body()))
    status = await node.wait_state("error")
    assert status["error_code"] == "internal_error"
    assert "etcd exited with code 1" in status["error_details"]["message"]


async def test_validate_in_error_agrees_with_what_post_would_do(failed_node: Node) -> None:
    assert_empty_200(await failed_node.client.post(VALIDATE, json=create_body()))


# --- after bootstrap: auth on every route, 409 already_bootstrapped -----------------------------


@pytest.fixture
async def completed_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node that created a cluster for real: a real etcd member on an address of its own."""
    etcd = shutil.which("etcd")
    assert etcd is not None
    addr = claim_address()
    try:
        config = node_config(tmp_path, addr=addr, etcd_binary=etcd)
        async with running_node(config) as node:
            assert_empty_200(await node.client.post(CREATE, json=create_body(license="")))
            status = await node.wait_state("completed", "error", timeout=20, headers=basic(*ADMIN))
            assert status["state"] == "completed", status
            yield node
    finally:
        release_address(addr)


async def test_after_bootstrap_every_route_needs_credentials(completed_node: Node) -> None:
    node = completed_node
    routes = [
        ("GET", "/v1/bootstrap"),
        ("GET", "/v1/boostrap"),
        ("POST", CREATE),
        ("POST", VALIDATE),
        *(("GET", path) for path in CLUSTER_PATHS),
    ]
    wrong = [
        {},
        basic(ADMIN[0], "wrong-password"),
        basic("nobody@example.com", ADMIN[1]),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer abc"},
    ]
    for number, (method, path) in enumerate(routes, start=1):
        # Each route from its own client address: one address's failures would soon be locked
        # out or rate-limited (tests/cluster/test_sign_in_flood.py), which is not the point here.
        transport = httpx.ASGITransport(app=node.app, client=(f"192.0.2.{number}", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for headers in wrong:
                response = await client.request(method, path, json=create_body(), headers=headers)
                error_of(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == 'Basic realm="cnm"'
    status = await node.bootstrap_status(headers=basic(*ADMIN))
    assert status["state"] == "completed"
    assert set(status) == {"state", "start_time", "end_time"}


async def test_after_bootstrap_the_admin_is_served(completed_node: Node) -> None:
    node = completed_node
    auth = basic(*ADMIN)
    body = json_of(await node.client.get("/v1/bootstrap", headers=auth))
    assert body["local_node_info"]["uid"] == "1"
    # Logins are case-insensitive emails.
    upper = basic(ADMIN[0].upper(), ADMIN[1])
    assert (await node.client.get("/v1/bootstrap", headers=upper)).status_code == 200
    cluster = await node.client.get("/v1/cluster", headers=auth)
    assert cluster.status_code == 200
    assert b'"name":"c1.example.com"' in cluster.content
    license_ = json_of(await node.client.get("/v1/license", headers=auth))
    assert "trial" in license_["features"]
    assert license_["shards_limit"] == 4
    assert license_["activation_date"] == body["bootstrap_status"]["start_time"]


async def test_after_bootstrap_post_and_validate_are_409_already_bootstrapped(
    completed_node: Node,
) -> None:
    node = completed_node
    before = node.status_file_bytes()
    on_disk = node.file_status()
    assert on_disk is not None and on_disk["state"] == "completed"
    auth = basic(*ADMIN)
    for path in (CREATE, VALIDATE):
        response = await node.client.post(path, json=create_body(), headers=auth)
        error_of(response, 409, "already_bootstrapped")
    assert node.status_file_bytes() == before
