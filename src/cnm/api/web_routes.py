"""The web console's routes: `/` (the page) and `/web/{name}` (its scripts and style sheet).

Served without credentials before and after bootstrap (the files hold no data; everything they
show comes from API calls that carry the user's token), on HTTP and HTTPS alike, with the
page's Content-Security-Policy: scripts and styles from this origin only, no inline code, no
framing, API calls to this origin only.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cnm.api.routing import ApiRouter
from cnm.web import ASSETS, INDEX, read_asset

PAGE_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


def _serve(name: str) -> Response:
    return Response(
        read_asset(name),
        media_type=ASSETS[name],
        headers={"Content-Security-Policy": PAGE_CSP},
    )


def web_router() -> ApiRouter:
    router = ApiRouter(include_in_schema=False)

    @router.get("/")
    async def page(request: Request) -> Response:
        return _serve(INDEX)

    @router.get("/web/{name}")
    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            # The API's own 404 answer (`not_found`, naming the path).
            raise HTTPException(status_code=404)
        return _serve(name)

    return router
