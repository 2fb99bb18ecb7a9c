"""`secured_etcd`: a private one-member etcd 3.4 with authentication on, as cnm sets it up (root,
the node role, user node:1, the admin password in the store), for unit tests of the etcd client."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cnm.security import key_files, pki
from cnm.store import etcd_auth
from cnm.store.etcd import EtcdStore
from cnm.store.etcd_auth import StoreCredentials
from cnm.store.etcd_process import EtcdMemberSpec, EtcdProcess
from cnm.store.etcd_wire import client_tls_context
from cnm.store.lease_stream import grpc_tls
from harness.addresses import claim_address, release_address

ADMIN_KEY = "/cnm/secrets/store-admin"


@dataclass
class Secured:
    url: str
    ca_file: Path
    cert: tuple[Path, Path]
    node: StoreCredentials
    etcd: EtcdProcess
    member_cert: tuple[Path, Path]  # the member's own (server) certificate and key

    def client(self, credentials: StoreCredentials | None, *, grpc: bool = False) -> EtcdStore:
        """A store client of this etcd as `credentials`; `grpc`: keep-alives on the gRPC
        stream (store/lease_stream.py), as agents do."""
        files = (str(self.ca_file), str(self.cert[0]), str(self.cert[1]))
        return EtcdStore(
            [self.url],
            tls=client_tls_context(*files),
            timeout=3.0,
            credentials=lambda: credentials,
            admin_key=ADMIN_KEY,
            grpc_tls=grpc_tls(*files) if grpc else None,
        )


def one_member_spec(
    name: str, directory: Path, addr: str, ca_file: Path, cert: tuple[Path, Path]
) -> EtcdMemberSpec:
    """A new one-member etcd called `name` on `addr`, its data and log under `directory`."""
    return EtcdMemberSpec(
        name=name,
        data_dir=directory / "member",
        addr=addr,
        client_port=2379,
        peer_port=2380,
        ca_file=ca_file,
        cert_file=cert[0],
        key_file=cert[1],
        initial_cluster=f"{name}=https://{addr}:2380",
        initial_state="new",
        cluster_token=uuid.uuid4().hex,
        log_file=directory / "etcd.log",
    )


@contextlib.asynccontextmanager
async def secured_etcd(tmp_path: Path) -> AsyncIterator[Secured]:
    """A one-member etcd with auth on: root, the node role, user node:1; the admin password
    in the store as cnm keeps it."""
    binary = shutil.which("etcd")
    assert binary is not None
    addr = claim_address()
    ca = pki.make_ca("etcd-auth")
    member_cert = pki.issue_node_cert(ca, 1, [addr])
    client_cert = pki.issue_store_client_cert(ca, 1)
    files = {}
    for name, cert in (("member", member_cert), ("client", client_cert)):
        files[name] = (tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        key_files.write_public(files[name][0], cert.cert_pem)
        key_files.write_private(files[name][1], cert.key_pem)
    ca_file = tmp_path / "ca.pem"
    key_files.write_public(ca_file, ca.cert_pem)
    spec = one_member_spec("auth", tmp_path, addr, ca_file, files["member"])
    etcd = EtcdProcess(binary, spec)
    node = StoreCredentials("node:1", etcd_auth.new_password())
    setup = Secured(spec.client_url, ca_file, files["client"], node, etcd, files["member"])
    try:
        await etcd.start()
        store = setup.client(node)
        try:
            await etcd.wait_ready(store)
            admin = etcd_auth.new_password()
            await store.enable_access_control(admin, "/cnm/", [(node.user, node.password)])
            await store.put(ADMIN_KEY, etcd_auth.admin_document(admin))
        finally:
            await store.close()
        yield setup
    finally:
        await etcd.stop()
        release_address(addr)
