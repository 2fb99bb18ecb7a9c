"""Talking to an agent's etcd member directly, over etcd's JSON gateway, as tests and benchmarks
inspect the store: with the node's store client certificate (the gateway refuses certificates
with a common name once etcd auth is on) and, for reads and writes, a token of the node's own
etcd user (store/etcd_auth.py)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from cnm.node.data_dir import ClusterTls
from cnm.store.etcd_auth import load_credentials


def client_context(tls: ClusterTls, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """Trust the cluster CA; present `cert` (certificate, key), by default the node's store
    client certificate."""
    cert_file, key_file = cert or tls.store_client_files()
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def authenticate(url: str, context: ssl.SSLContext, user: str, password: str) -> httpx.Response:
    body = {"name": user, "password": password}
    return httpx.post(f"{url}/v3/auth/authenticate", json=body, verify=context, timeout=5)


def node_token(url: str, tls: ClusterTls) -> str | None:
    """A token of the node's etcd user from the member at `url`; None when the node has no
    store user (a store without auth)."""
    credentials = load_credentials(tls.store_credentials_file)
    if credentials is None:
        return None
    response = authenticate(url, client_context(tls), credentials.user, credentials.password)
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


def post(addr: str, tls: ClusterTls, path: str, body: dict[str, Any]) -> httpx.Response:
    """`path` on the etcd member at `addr` as the node whose TLS directory is `tls`."""
    url = f"https://{addr}:2379"
    token = node_token(url, tls)
    headers = {"Authorization": token} if token else None
    return httpx.post(url + path, json=body, verify=client_context(tls), headers=headers, timeout=5)
