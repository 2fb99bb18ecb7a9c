"""A sign-in flood, run as its own process so that it does not share the test's interpreter:
`python flood.py URL LOGIN CLIENTS SECONDS`. CLIENTS concurrent clients, each from its own
loopback source address (127.0.200.N), send wrong passwords for LOGIN one request after the
other for at most SECONDS, each until it was told 3 times that it is locked out; prints one
JSON line: {"statuses": {status: count}, "codes": {code: count}}.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import sys
import time

import httpx


async def attacker(
    url: str,
    login: str,
    number: int,
    until: float,
    seen: collections.Counter[str],
    codes: collections.Counter[str],
) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.200.{number}")
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        guess = 0
        locked = 0
        # Until the node has told this client 3 times that it is locked out (or time is up).
        while time.monotonic() < until and locked < 3:
            guess += 1
            token = base64.b64encode(f"{login}:guess-{number}-{guess}".encode()).decode()
            try:
                response = await client.get(
                    f"{url}/v1/cluster", headers={"Authorization": f"Basic {token}"}
                )
            except httpx.HTTPError as exc:
                seen[type(exc).__name__] += 1
                continue
            seen[str(response.status_code)] += 1
            if response.headers.get("content-type") == "application/json":
                code = str(response.json().get("error_code"))
                codes[code] += 1
                locked += code == "sign_in_locked"


async def main(url: str, login: str, clients: int, seconds: float) -> None:
    seen: collections.Counter[str] = collections.Counter()
    codes: collections.Counter[str] = collections.Counter()
    until = time.monotonic() + seconds
    print("started", flush=True)
    await asyncio.gather(
        *(attacker(url, login, n, until, seen, codes) for n in range(1, clients + 1))
    )
    print(json.dumps({"statuses": dict(seen), "codes": dict(codes)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
