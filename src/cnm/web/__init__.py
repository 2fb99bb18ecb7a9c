"""The web console's static files (HTML, CSS, JavaScript) and the list of names served.

The console is a client of the REST API like any other: these files hold no data and no
secrets, need no build step and load nothing from outside the agent. `ASSETS` is the only way a
file gets served (no path from a request ever reaches the file system).
"""

from __future__ import annotations

import functools
from importlib import resources

INDEX = "index.html"

ASSETS: dict[str, str] = {
    INDEX: "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "util.js": "text/javascript; charset=utf-8",
    "details.js": "text/javascript; charset=utf-8",
    "wizard.js": "text/javascript; charset=utf-8",
    "progress.js": "text/javascript; charset=utf-8",
    "cluster.js": "text/javascript; charset=utf-8",
    "users.js": "text/javascript; charset=utf-8",
    "main.js": "text/javascript; charset=utf-8",
}


@functools.cache
def read_asset(name: str) -> bytes:
    """The bytes of a file in `ASSETS` (read once; `KeyError` for any other name)."""
    if name not in ASSETS:
        raise KeyError(name)
    return (resources.files(__package__) / "static" / name).read_bytes()
