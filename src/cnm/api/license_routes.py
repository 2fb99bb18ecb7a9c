"""The license routes: GET /v1/license and PUT /v1/license.

PUT takes `{"license": "<armoured text>"}` (or the armoured text itself as the body) and checks
it against this node's trusted keys, the cluster's name and its current node and shard counts
(`cnm.cluster.license`): 400 `invalid_license` for a malformed or forged license, 406 for valid
terms that are violated (expired, not yet valid, another cluster, too few nodes or shards), 200
with the new license object once this node's snapshot shows it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cnm.api.auth import LICENSE_INSTALLERS, LICENSE_VIEWERS, require_role
from cnm.api.context import ApiContext, read_body
from cnm.api.openapi import operation
from cnm.api.responses import compact
from cnm.api.routing import ApiRouter
from cnm.clock import utc_now
from cnm.cluster import fields, model
from cnm.cluster.license import (
    LICENSE_START,
    MAX_LICENSE_CHARS,
    check_license_text,
    public_license,
)
from cnm.cluster.records import LicenseRecord
from cnm.cluster.writes import wait_for_revision
from cnm.json_body import parse_object


def _license_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    if text.startswith(LICENSE_START):
        return text
    body = parse_object(raw)
    value = fields.string(body, "license", max_chars=MAX_LICENSE_CHARS, required=True, secret=True)
    assert value is not None
    return value


def license_router(context: ApiContext) -> ApiRouter:
    router = ApiRouter()

    @router.get(
        "/v1/license", **operation("The license", ok="LicenseObject", errors=(401, 403, 503))
    )
    async def get_license(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, LICENSE_VIEWERS, "view the license")
        record = runtime.snapshot.license() or LicenseRecord()
        return compact(public_license(record, utc_now()))

    @router.put(
        "/v1/license",
        **operation(
            "Install a license",
            ok="LicenseObject",
            errors=(400, 401, 403, 406, 413, 503),
            body="LicenseUpdate",
            text_body=True,
        ),
    )
    async def put_license(request: Request) -> Response:
        runtime, user = await context.require_fresh_cluster(request)
        require_role(user, LICENSE_INSTALLERS, "install a license")
        text = _license_text(await read_body(request))
        snapshot = runtime.snapshot
        cluster = snapshot.cluster()
        nodes = snapshot.nodes()
        shards = sum(node.shard_count for node in nodes)
        now = utc_now()
        record = await check_license_text(
            text,
            context.config.license_public_keys,
            cluster.name if cluster else "",
            now,
            node_count=len(nodes),
            shard_count=shards,
        )
        revision = await runtime.store.put(model.LICENSE_KEY, record.encode())
        await wait_for_revision(snapshot, revision)
        return compact(public_license(record, now))

    return router
