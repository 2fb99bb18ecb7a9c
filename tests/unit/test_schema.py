"""Parsing of the bootstrap body: limits, JSON errors with positions, strict types, messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cnm.bootstrap.schema import BootstrapRequest, parse_bootstrap_body
from cnm.errors import InvalidSchema, PayloadTooLarge
from cnm.json_body import MAX_BODY_BYTES
from harness.doc_examples import DOC_CREATE_BODY, DOC_JOIN_BODY

FULL_CREATE: dict[str, Any] = {
    "action": "create_cluster",
    "cluster": {"name": "cluster.example.com", "nodes": [], "wait_command": False},
    "credentials": {"username": "admin@example.com", "password": "s3cret-pass"},
    "license": "",
    "node": {
        "paths": {
            "persistent_path": "/var/opt/redislabs/persist",
            "ephemeral_path": "/var/opt/redislabs/tmp",
            "bigstore_path": "/var/opt/redislabs/flash",
            "ccs_persistent_path": "/var/opt/redislabs/persist",
        },
        "bigstore_enabled": True,
        "bigstore_driver": "speedb",
        "identity": {
            "addr": "127.0.0.1",
            "external_addr": ["203.0.113.7"],
            "name": "node1",
            "rack_id": "rack-a",
            "second_rack_id": "rack_b1",
            "override_rack_id": False,
            "accept_servers": False,
        },
        "limits": {"max_listeners": 200, "max_redis_servers": 50},
    },
    "policy": {
        "rack_aware": True,
        "default_shards_placement": "sparse",
        "default_sharded_proxy_policy": "all-master-shards",
        "shards_overbooking": False,
    },
    "dns_suffixes": [
        {
            "name": "db.example.com",
            "cluster_default": True,
            "use_aaaa_ns": False,
            "use_internal_addr": True,
            "slaves": [],
        }
    ],
}

FULL_JOIN: dict[str, Any] = {
    "action": "join_cluster",
    "cluster": {
        "nodes": ["10.0.0.1", "node2.example.com:9443", "[2001:db8::1]:9443"],
        "ca_fingerprint": "sha256:" + "ab" * 32,
    },
    "credentials": {"username": "admin@example.com", "password": "s3cret-pass"},
    "node": {
        "paths": {"persistent_path": "/var/opt/redislabs/persist"},
        "identity": {"addr": "127.0.0.2", "rack_id": "r1", "uid": 4},
    },
    "policy": {"rack_aware": True},
    "cnm_https_port": 9443,
    "max_retries": 5,
    "retry_time": 10,
    "required_version": "7.4.0",
}


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def schema_error(raw: bytes) -> InvalidSchema:
    with pytest.raises(InvalidSchema) as caught:
        parse_bootstrap_body(raw)
    return caught.value


def merged(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(base))
    document.update(changes)
    return document


# --- the documentation's examples --------------------------------------------------------------


def test_doc_join_example_points_at_the_first_missing_comma() -> None:
    error = schema_error(DOC_JOIN_BODY.encode())
    # Python reports the token after the gap ("bigstore_path" on line 10); the comma is missing
    # at the end of line 9, after the "ephemeral_path" value.
    assert error.message == (
        "invalid JSON at line 10, column 11: expecting ',' delimiter "
        "(is a ',' missing at the end of line 9?)"
    )
    assert error.details == {"line": 10, "column": 11}
    assert error.http_status == 400


def test_doc_create_example_points_at_the_first_missing_comma() -> None:
    error = schema_error(DOC_CREATE_BODY.encode())
    assert error.message == (
        "invalid JSON at line 11, column 11: expecting ',' delimiter "
        "(is a ',' missing at the end of line 10?)"
    )
    assert error.details == {"line": 11, "column": 11}


def test_syntax_error_on_one_line_has_no_hint() -> None:
    error = schema_error(b'{"a": 1 "b": 2}')
    assert error.message == "invalid JSON at line 1, column 9: expecting ',' delimiter"


# --- what the body is ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[1, 2]", "array"), (b'"text"', "string"), (b"42", "number"), (b"null", "null")],
)
def test_body_must_be_an_object(raw: bytes, kind: str) -> None:
    assert schema_error(raw).message == f"request body must be a JSON object, got {kind}"


@pytest.mark.parametrize("raw", [b"", b"  \r\n\t"])
def test_empty_body(raw: bytes) -> None:
    assert schema_error(raw).message == (
        "request body is empty: expected a JSON object (the bootstrap configuration)"
    )


def test_not_utf8_names_the_byte_offset() -> None:
    error = schema_error(b'{"cluster": {"name": "caf\xe9"}}')
    assert error.message == "request body is not valid UTF-8 (byte offset 25)"


def test_utf8_bom_is_ignored() -> None:
    assert parse_bootstrap_body(b"\xef\xbb\xbf{}") == BootstrapRequest()


def test_very_deep_nesting_is_a_clean_400() -> None:
    for raw in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        assert schema_error(raw).message == "JSON nested deeper than 64 levels"


def test_nesting_limit_is_64_levels_and_brackets_in_strings_do_not_count() -> None:
    inside = "[" * 63 + "]" * 63  # with the top-level object: 64 levels
    parse_bootstrap_body(('{"flash": ' + inside + ', "s": "[[[[\\"[[[' + "[" * 100 + '"}').encode())
    too_deep = '{"flash": [' + inside + "]}"
    assert schema_error(too_deep.encode()).message == "JSON nested deeper than 64 levels"


def test_body_over_one_mib_is_payload_too_large() -> None:
    raw = body({"license": "x" * (2 * 1024 * 1024)})
    with pytest.raises(PayloadTooLarge) as caught:
        parse_bootstrap_body(raw)
    assert "1048576 bytes" in caught.value.message
    assert caught.value.http_status == 413


def test_body_of_exactly_the_limit_is_parsed() -> None:
    prefix = b'{"ignored": "'
    raw = prefix + b"x" * (MAX_BODY_BYTES - len(prefix) - 2) + b'"}'
    assert len(raw) == MAX_BODY_BYTES
    assert parse_bootstrap_body(raw) == BootstrapRequest()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_rejected(constant: str) -> None:
    error = schema_error(f'{{"max_retries": {constant}}}'.encode())
    assert constant in error.message


def test_integer_with_too_many_digits() -> None:
    assert "too many digits" in schema_error(b'{"uid": ' + b"9" * 5000 + b"}").message


def test_duplicate_keys_last_wins() -> None:
    assert parse_bootstrap_body(b'{"license": "a", "license": "b"}').license == "b"


# --- types --------------------------------------------------------------------------------------


def test_wrong_types_are_all_named() -> None:
    document = {
        "cluster": {"nodes": 5, "wait_command": 1, "name": 7},
        "node": {"identity": {"uid": "1", "external_addr": [1]}, "bigstore_driver": "leveldb"},
        "policy": {"rack_aware": "true"},
        "credentials": {"password": 12345678},
    }
    error = schema_error(body(document))
    assert error.details["fields"] == [
        "cluster.name",
        "cluster.nodes",
        "cluster.wait_command",
        "credentials.password",
        "node.bigstore_driver",
        "node.identity.external_addr",
        "node.identity.uid",
        "policy.rack_aware",
    ]
    message = error.message
    assert "cluster.nodes: expected a list of strings, got 5" in message
    assert "cluster.wait_command: expected a boolean (true or false), got 1" in message
    assert "cluster.name: expected a string, got 7" in message
    assert "node.identity.uid: expected an integer" in message
    assert "node.identity.external_addr: expected a list of strings, but item 0 is 1" in message
    assert "node.bigstore_driver: expected one of 'rocksdb', 'speedb', got \"leveldb\"" in message
    assert "policy.rack_aware: expected a boolean (true or false), got a string" in message
    assert message.count("; ") == 7
    # A password sent with the wrong type is still a password: never echoed.
    assert "credentials.password: expected a string, got a number" in message
    assert "12345678" not in message
    for leak in ("pydantic", "http", "Input should", "StrictInt", "int_type", "dict"):
        assert leak not in message


@pytest.mark.parametrize(
    ("value", "got"), [(True, "true"), ("1", "a string"), (1.0, "1.0"), (-1, "-1")]
)
def test_integer_fields_take_only_json_integers(value: object, got: str) -> None:
    error = schema_error(body({"node": {"identity": {"uid": value}}}))
    assert error.message == (
        f"node.identity.uid: expected an integer between 0 and 2147483647, got {got}"
    )
    assert error.details == {"fields": ["node.identity.uid"]}


@pytest.mark.parametrize("value", [0, 1, "true"])
def test_boolean_fields_take_only_true_or_false(value: object) -> None:
    error = schema_error(body({"node": {"bigstore_enabled": value}}))
    assert error.message.startswith("node.bigstore_enabled: expected a boolean (true or false)")


def test_huge_port_is_a_400_naming_the_field() -> None:
    error = schema_error(body({"cnm_https_port": 10**30}))
    assert error.message == (
        "cnm_https_port: expected an integer between 1 and 65535, got a 31-digit number"
    )
    assert error.details == {"fields": ["cnm_https_port"]}


def test_port_zero_and_huge_limits_are_rejected() -> None:
    error = schema_error(body({"cnm_https_port": 0, "node": {"limits": {"max_listeners": 2**31}}}))
    assert error.details["fields"] == ["node.limits.max_listeners", "cnm_https_port"]


def test_oversized_strings_and_lists_name_the_field() -> None:
    document = {"license": "x" * 65_537, "cluster": {"nodes": ["10.0.0.1"] * 1001}}
    message = schema_error(body(document)).message
    assert (
        "license: expected a string of at most 65536 characters, got a string of 65537 characters"
        in message
    )
    assert "cluster.nodes: expected a list of at most 1000 strings, got an array of 1001 items" in (
        message
    )


def test_errors_inside_list_items_of_objects() -> None:
    error = schema_error(body({"dns_suffixes": [{"name": "a"}, {"slaves": "x"}, 3]}))
    assert error.details["fields"] == ["dns_suffixes[1].slaves", "dns_suffixes"]
    assert "dns_suffixes: expected a list of objects, but item 2 is 3" in error.message


def test_nested_object_of_the_wrong_type() -> None:
    error = schema_error(body({"node": [], "cluster": "x"}))
    assert error.message == (
        "cluster: expected an object, got a string; node: expected an object, got an array"
    )


# --- what is accepted ---------------------------------------------------------------------------


def test_single_string_cluster_nodes_becomes_a_list() -> None:
    req = parse_bootstrap_body(body({"cluster": {"nodes": "1.1.1.1"}}))
    assert req.cluster.nodes == ["1.1.1.1"]


def test_unknown_fields_are_ignored_at_every_level() -> None:
    document = merged(FULL_JOIN, flash_enabled=True)
    document["cluster"]["shard_hint"] = True
    document["node"]["identity"]["zone"] = {"deep": [1, 2]}
    document["node"]["paths"]["extra_path"] = 3
    document["credentials"]["otp"] = 123456
    document["policy"]["whatever"] = "x"
    assert parse_bootstrap_body(body(document)) == parse_bootstrap_body(body(FULL_JOIN))


def test_null_means_absent() -> None:
    req = parse_bootstrap_body(
        body({"cluster": {"wait_command": None, "nodes": None}, "license": None, "node": None})
    )
    assert req == BootstrapRequest()
    assert req.cluster.wait_command is True


def test_defaults() -> None:
    req = parse_bootstrap_body(b"{}")
    assert req.action is None
    assert req.cluster.nodes == []
    assert req.cluster.wait_command is True
    assert req.node.identity.accept_servers is True
    assert req.node.limits.max_listeners == 100
    assert req.node.limits.max_redis_servers == 100
    assert req.dns_suffixes == []


def test_full_create_body() -> None:
    req = parse_bootstrap_body(body(FULL_CREATE))
    assert req.action == "create_cluster"
    assert req.cluster.name == "cluster.example.com"
    assert req.cluster.wait_command is False
    assert req.credentials.password == "s3cret-pass"
    assert req.license == ""
    assert req.node.paths.ccs_persistent_path == "/var/opt/redislabs/persist"
    assert req.node.bigstore_driver == "speedb"
    assert req.node.identity.external_addr == ["203.0.113.7"]
    assert req.node.identity.second_rack_id == "rack_b1"
    assert req.node.identity.accept_servers is False
    assert req.node.limits.max_listeners == 200
    assert req.policy.default_shards_placement == "sparse"
    assert req.dns_suffixes[0].name == "db.example.com"


def test_full_join_body() -> None:
    req = parse_bootstrap_body(body(FULL_JOIN))
    assert req.cluster.nodes == FULL_JOIN["cluster"]["nodes"]
    assert req.cluster.ca_fingerprint == "sha256:" + "ab" * 32
    assert req.node.identity.uid == 4
    assert req.cnm_https_port == 9443
    assert (req.max_retries, req.retry_time, req.required_version) == (5, 10, "7.4.0")


def test_models_are_frozen() -> None:
    req = parse_bootstrap_body(body(FULL_JOIN))
    with pytest.raises(ValueError, match="frozen"):
        req.cluster.name = "x"  # type: ignore[misc]
