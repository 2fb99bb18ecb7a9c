"""The bootstrap object (docs/api-contract.md §2): its typed models, parsed from a request body.

This module owns the step from a parsed JSON object (`cnm.json_body`, the front end of every
body: size and nesting limits, syntax errors with line and column) to a `BootstrapRequest`:
strict types, and pydantic's errors turned into messages an operator can act on. A body that
fails here is a 400 `invalid_schema` and changes no state; the semantic checks (FQDN,
credentials, addresses) live in `validation` and end in `config_error`.

Conventions of the models: every field is optional (what an action requires is semantic), unknown
fields are ignored at every level (clients send `flash_enabled`), an explicit
JSON `null` means the same as an absent field, types are strict (a typed client parses our echo
of them), and every string, list and integer is bounded so that a hostile body is a 400 naming the
field, never a crash.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from cnm.errors import InvalidSchema
from cnm.json_body import json_kind, parse_object

MAX_STRING_CHARS = 65_536  # a license or a PEM chain can be long
MAX_LIST_ITEMS = 1_000
MAX_INT32 = 2**31 - 1

Text = Annotated[str, Field(max_length=MAX_STRING_CHARS)]
TextList = Annotated[list[Text], Field(max_length=MAX_LIST_ITEMS)]
Count = Annotated[int, Field(ge=0, le=MAX_INT32)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    # strict: integers are JSON integers (not true, "1" or 1.0), booleans are true/false.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_absent(cls, data: Any) -> Any:
        # Clients built from templates send `"rack_id": null` for "not set"; the default applies.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class ClusterSpec(_Model):
    name: Text | None = None
    nodes: TextList = Field(default_factory=list)
    wait_command: bool = True
    ca_fingerprint: Text | None = None  # cnm extension: pin the cluster CA when joining
    # Wipe another cluster's store data found in ccs_persistent_path (bootstrap/store_data.py).
    clobber: bool = False

    @field_validator("nodes", mode="before")
    @classmethod
    def _single_node_as_list(cls, value: Any) -> Any:
        # One documentation example sends `"nodes": "1.1.1.1"`.
        return [value] if isinstance(value, str) else value


class Credentials(_Model):
    username: Text | None = None
    password: Text | None = None
    client_cert: Text | None = None
    client_key: Text | None = None
    trusted_ca: Text | None = None


class NodePathsSpec(_Model):
    persistent_path: Text | None = None
    ephemeral_path: Text | None = None
    bigstore_path: Text | None = None
    ccs_persistent_path: Text | None = None


class Identity(_Model):
    addr: Text | None = None
    external_addr: TextList = Field(default_factory=list)
    name: Text | None = None
    rack_id: Text | None = None
    second_rack_id: Text | None = None
    override_rack_id: bool | None = None
    uid: Count | None = None
    accept_servers: bool = True


class Limits(_Model):
    max_listeners: Count = 100
    max_redis_servers: Count = 100


class NodeSpec(_Model):
    paths: NodePathsSpec = Field(default_factory=NodePathsSpec)
    bigstore_enabled: bool | None = None
    bigstore_driver: Literal["rocksdb", "speedb"] | None = None
    identity: Identity = Field(default_factory=Identity)
    limits: Limits = Field(default_factory=Limits)


class PolicySpec(_Model):
    rack_aware: bool | None = None
    default_shards_placement: Literal["dense", "sparse"] | None = None
    default_sharded_proxy_policy: Text | None = None
    default_non_sharded_proxy_policy: Text | None = None
    shards_overbooking: bool | None = None


class DnsSuffix(_Model):
    name: Text | None = None
    cluster_default: bool | None = None
    use_aaaa_ns: bool | None = None
    use_internal_addr: bool | None = None
    slaves: TextList = Field(default_factory=list)


class BootstrapRequest(_Model):
    # A str, not a Literal: a body action that disagrees with the path is a config_error
    # (docs/api-contract.md §2), reported by validation.check_request, not a schema error.
    action: Text | None = None
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    credentials: Credentials = Field(default_factory=Credentials)
    license: Text | None = None
    node: NodeSpec = Field(default_factory=NodeSpec)
    policy: PolicySpec = Field(default_factory=PolicySpec)
    dns_suffixes: Annotated[list[DnsSuffix], Field(max_length=MAX_LIST_ITEMS)] = Field(
        default_factory=list
    )
    cnm_https_port: Port | None = None
    recovery_filename: Text | None = None
    max_retries: Count | None = None
    retry_time: Count | None = None
    required_version: Text | None = None
    # join: add a new node although the cluster has failed nodes (cluster/repair.py).
    override_repair: bool | None = None


# --- parsing ------------------------------------------------------------------------------------


def parse_bootstrap_body(raw: bytes) -> BootstrapRequest:
    """Parse a POST body into a `BootstrapRequest`.

    Raises what `cnm.json_body.parse_object` raises for a body that is too large, not UTF-8,
    empty, not JSON, nested too deep, not an object or holding an unusable string, and
    `InvalidSchema` for fields of the wrong type (all of them named, with a `fields` detail
    listing their dotted paths).
    """
    document = parse_object(raw, expected="a JSON object (the bootstrap configuration)")
    try:
        return BootstrapRequest.model_validate(document)
    except ValidationError as exc:
        problems = _describe_errors(exc.errors(include_url=False))
        raise InvalidSchema(
            "; ".join(message for _, message in problems),
            fields=[path for path, _ in problems],
        ) from None


# --- pydantic errors → operator messages --------------------------------------------------------

_LENGTH_ERRORS = frozenset({"string_too_long", "too_long"})
_NONE_TYPE = type(None)


def _describe_errors(errors: Sequence[ErrorDetails]) -> list[tuple[str, str]]:
    """One (dotted path, message) per wrong field, in body order; pydantic's words never leak."""
    problems: dict[str, str] = {}
    for error in errors:
        path, annotation, item = _resolve(error["loc"])
        if path in problems:
            continue
        too_long = error["type"] in _LENGTH_ERRORS
        if item is not None and too_long:
            # One item of the list is too long, not the list: "a list of strings of at most ...".
            base, _ = _unwrap(annotation)
            item_type = typing.get_args(base)[0]
            expected = "a list of " + _expected(item_type, with_length=True, plural=True)
        else:
            expected = _expected(annotation, with_length=too_long)
        got = _got(error["input"], error["type"], path)
        if item is None:
            problems[path] = f"{path}: expected {expected}, got {got}"
        else:
            problems[path] = f"{path}: expected {expected}, but item {item} is {got}"
    return list(problems.items())


def _resolve(loc: tuple[int | str, ...]) -> tuple[str, Any, int | None]:
    """Walk `loc` through the models: the dotted path, the field's annotation, and the list
    index when the error is about one item of a list (reported against the list itself)."""
    path = ""
    annotation: Any = BootstrapRequest
    for position, part in enumerate(loc):
        base, _ = _unwrap(annotation)
        if isinstance(part, int):
            if position == len(loc) - 1:
                return path, annotation, part
            path += f"[{part}]"
            annotation = typing.get_args(base)[0] if typing.get_origin(base) is list else None
            continue
        path = f"{path}.{part}" if path else part
        fields = base.model_fields if _is_model(base) else {}
        field = fields.get(part)
        annotation = (
            Annotated[(field.annotation, *field.metadata)]
            if field is not None and field.metadata
            else (field.annotation if field is not None else None)
        )
    return path, annotation, None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip `| None` and `Annotated`: the base type and its constraints (ge, le, max_length)."""
    constraints: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation, *metadata = typing.get_args(annotation)
            for item in metadata:
                constraints.extend(getattr(item, "metadata", [item]))
        elif origin in (Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not _NONE_TYPE]
            if len(members) != 1:
                return annotation, constraints
            annotation = members[0]
        else:
            return annotation, constraints


def _expected(annotation: Any, *, with_length: bool = False, plural: bool = False) -> str:
    base, constraints = _unwrap(annotation)
    lower = next((c.ge for c in constraints if isinstance(c, annotated_types.Ge)), None)
    upper = next((c.le for c in constraints if isinstance(c, annotated_types.Le)), None)
    longest = next((c.max_length for c in constraints if isinstance(c, annotated_types.MaxLen)), 0)
    if base is bool:
        return "booleans (true or false)" if plural else "a boolean (true or false)"
    if base is int:
        noun = "integers" if plural else "an integer"
        if lower is not None and upper is not None:
            return f"{noun} between {lower} and {upper}"
        return noun
    if base is str:
        noun = "strings" if plural else "a string"
        return f"{noun} of at most {longest} characters" if with_length and longest else noun
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(base))
    if typing.get_origin(base) is list:
        items = _expected(typing.get_args(base)[0], plural=True)
        return (
            f"a list of at most {longest} {items}"
            if with_length and longest
            else (f"a list of {items}")
        )
    if _is_model(base):
        return "objects" if plural else "an object"
    return "valid values" if plural else "a valid value"


def _got(value: Any, error_type: str, path: str) -> str:
    kind = json_kind(value)
    if error_type == "string_too_long" and isinstance(value, str):
        return f"a string of {len(value)} characters"
    if error_type == "too_long" and isinstance(value, list):
        return f"an array of {len(value)} items"
    if path.startswith("credentials") or kind in ("array", "object"):
        # Never echo what may be a secret (a password sent as a number is still a password).
        return "an " + kind if kind[0] in "aeiou" else "a " + kind
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        digits = len(str(abs(value)))
        return str(value) if digits <= 20 else f"a {digits}-digit number"
    if isinstance(value, float):
        return repr(value)
    if error_type == "literal_error" and len(value) <= 40:
        return json.dumps(value)
    return "a string"
