"""etcd's access control as `EtcdStore` drives it (store/etcd_auth.py says what the users and
roles are): switching authentication on for a new store, and adding, re-keying and deleting the
nodes' etcd users. Kept apart from the client's data paths (store/etcd.py); it runs over the
same calls, as `root` once authentication is on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnm.errors import StoreError, StoreUnavailable
from cnm.store import etcd_auth
from cnm.store.etcd_wire import range_body


class EtcdAccessControl:
    """The access-control calls of `EtcdStore`, which supplies `_call` (one gateway call, as
    `root` with `admin=True`) and the token and password state they reset."""

    _tokens: dict[tuple[str, str], str]
    _admin_password: str | None

    async def _call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        timeout: float | None = None,
        admin: bool = False,
    ) -> Any:
        raise NotImplementedError

    async def enable_access_control(
        self, admin_password: str, prefix: str, node_users: Sequence[tuple[str, str]]
    ) -> None:
        """Switch etcd authentication on: the `root` user with `admin_password`, the node role
        with read and write on `prefix`, `node_users` (name, password) with that role. Run
        before auth is on (a new store); every step tolerates an earlier attempt's."""
        role = etcd_auth.NODE_ROLE
        await self._tolerant("/v3/auth/role/add", {"name": role}, etcd_auth.ROLE_EXISTS)
        permission = {"permType": "READWRITE", **range_body(prefix, True)}
        await self._call("/v3/auth/role/grant", {"name": role, "perm": permission})
        for name, password in node_users:
            await self._set_user(name, password, role)
        await self._set_user(etcd_auth.ROOT_USER, admin_password, etcd_auth.ROOT_ROLE)
        await self._call("/v3/auth/enable", {})
        # Tokens of "auth is off" are stale now.
        self._tokens.clear()
        self._admin_password = admin_password

    async def put_store_user(self, name: str, password: str) -> None:
        """Create the etcd user `name` with the node role, or give it a new password (which
        ends the sessions of the old one). As `root`."""
        await self._set_user(name, password, etcd_auth.NODE_ROLE, admin=True)

    async def delete_store_user(self, name: str) -> None:
        """Delete the etcd user `name` (ends its sessions); one already gone is no error."""
        await self._tolerant(
            "/v3/auth/user/delete", {"name": name}, etcd_auth.USER_NOT_FOUND, admin=True
        )

    async def _set_user(self, name: str, password: str, role: str, *, admin: bool = False) -> None:
        body = {"name": name, "password": password}
        try:
            await self._call("/v3/auth/user/add", body, admin=admin)
        except StoreError as exc:
            if etcd_auth.USER_EXISTS not in exc.message.lower():
                raise
            await self._call("/v3/auth/user/changepw", body, admin=admin)
        await self._call("/v3/auth/user/grant", {"user": name, "role": role}, admin=admin)

    async def _tolerant(
        self, path: str, body: dict[str, Any], tolerated: str, *, admin: bool = False
    ) -> None:
        try:
            await self._call(path, body, admin=admin)
        except StoreError as exc:
            if tolerated not in exc.message.lower() or isinstance(exc, StoreUnavailable):
                raise
