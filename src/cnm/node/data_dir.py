"""Where a node keeps its files: the one description of the data directory's layout.

Every path inside an agent's data directory is named here and nowhere else (the daemon, the
bootstrap actions, the cluster runtime, `cnm local` and the test harness all ask this module):

    DATA_DIR/
      bootstrap-status.json     the bootstrap status record (bootstrap.status)
      node-state.json           the local state after a completed bootstrap (node.local_state)
      node-key                  the node's join identity, made once (bootstrap.join)
      users.json                the last users this node knew, verifiers only, 0600
                                (cluster.quorum: checks GET /v1/bootstrap while the store is down)
      tls/self/cert.pem, key.pem            the pre-bootstrap HTTPS certificate
      tls/cluster/ca.pem, node.pem, node.key  the cluster CA and this node's certificate from it
      tls/cluster/store-user.json   this node's etcd user and password, 0600 (store/etcd_auth.py)
      tls/cluster/store-client.pem, .key  the certificate its store client presents to etcd
      logs/etcd.log             the output of this node's etcd member
      agent.log                 the agent's output, when a supervisor (`cnm local`, the tests)
                                redirects it there; the agent itself logs to stderr
      persist/ tmp/ flash/      the node's storage paths when `cnm local` or the tests run it;
                                an agent with default settings uses /var/opt/redislabs/...

The etcd member's own directory is not in the data dir: like the product's CCS it lives under
the node's `ccs_persistent_path` (by default `PERSISTENT_PATH/ccs`), see `etcd_member_dir`; beside
it `cluster-identity.json` (whose store data it is: node.local_state, bootstrap.store_data) and
`snapshots/` (the store snapshots, cluster.backup).

A `cnm local` directory holds `state.json` (each agent's address, data dir and pid with its start
time), `admin-password` (0600) and one data dir per node (`node1/`, ...): `LocalClusterDir`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# The file names are part of the layout a restarted agent reads back: never rename one without
# reading the old name too.
STATUS_FILE = "bootstrap-status.json"
LOCAL_STATE_FILE = "node-state.json"
NODE_KEY_FILE = "node-key"
USERS_FILE = "users.json"
AGENT_LOG_FILE = "agent.log"
CCS_DIR = "ccs"
CLUSTER_IDENTITY_FILE = "cluster-identity.json"
ETCD_MEMBER_DIR = "etcd"


@dataclass(frozen=True)
class SelfSignedTls:
    """The certificate HTTPS serves before the node is in a cluster."""

    directory: Path

    @property
    def cert_file(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "key.pem"


@dataclass(frozen=True)
class ClusterTls:
    """Where this node keeps the cluster CA and its own certificate from it."""

    directory: Path

    @classmethod
    def under(cls, data_dir: Path) -> ClusterTls:
        return DataDir(data_dir).cluster_tls

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "node.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "node.key"

    @property
    def store_credentials_file(self) -> Path:
        """This node's etcd user and password (store/etcd_auth.py), 0600."""
        return self.directory / "store-user.json"

    @property
    def store_cert_file(self) -> Path:
        """The certificate the store client presents (no common name: pki.py)."""
        return self.directory / "store-client.pem"

    @property
    def store_key_file(self) -> Path:
        return self.directory / "store-client.key"

    def store_client_files(self) -> tuple[Path, Path]:
        """(certificate, key) the store client presents: the store client certificate once the
        node has one (a store with authentication), else the node certificate."""
        if self.store_cert_file.exists():
            return self.store_cert_file, self.store_key_file
        return self.cert_file, self.key_file


def private_log(path: Path) -> BinaryIO:
    """`path` opened for appending, made 0600 (a log may name users and addresses: only the
    node's own account reads it), whatever the umask and even if it existed with wider rights."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def make_private_dir(path: Path) -> None:
    """Create `path` (and its parents) and make it 0700: a data directory holds keys and the
    store's files, readable by the node's own account only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


@dataclass(frozen=True)
class DataDir:
    """The layout of one agent's data directory (`--data-dir`)."""

    root: Path

    @property
    def status_file(self) -> Path:
        return self.root / STATUS_FILE

    @property
    def local_state_file(self) -> Path:
        return self.root / LOCAL_STATE_FILE

    @property
    def node_key_file(self) -> Path:
        return self.root / NODE_KEY_FILE

    @property
    def leaving_file(self) -> Path:
        """Present while a removed node wipes its cluster data: a restart finishes the wipe."""
        return self.root / "leaving"

    @property
    def users_file(self) -> Path:
        return self.root / USERS_FILE

    @property
    def http_support_file(self) -> Path:
        """The cluster's `http_support` as this node last saw it ("true"/"false"): a restart
        that listens before it has read the cluster keeps port 8080 as the cluster wants it."""
        return self.root / "http-support"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def self_signed_tls(self) -> SelfSignedTls:
        return SelfSignedTls(self.tls_dir / "self")

    @property
    def cluster_tls(self) -> ClusterTls:
        return ClusterTls(self.tls_dir / "cluster")

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_log(self) -> Path:
        return self.logs_dir / "etcd.log"

    @property
    def agent_log(self) -> Path:
        return self.root / AGENT_LOG_FILE

    # The storage paths a supervisor that owns the whole node (cnm local, the tests) gives it.
    @property
    def persistent_path(self) -> Path:
        return self.root / "persist"

    @property
    def ephemeral_path(self) -> Path:
        return self.root / "tmp"

    @property
    def bigstore_path(self) -> Path:
        return self.root / "flash"


def default_ccs_path(persistent_path: str | Path) -> Path:
    """The store's directory when a request names no `ccs_persistent_path`."""
    return Path(persistent_path) / CCS_DIR


def etcd_member_dir(ccs_persistent_path: str | Path) -> Path:
    """The etcd member's data directory of a node with this `ccs_persistent_path`."""
    return Path(ccs_persistent_path) / ETCD_MEMBER_DIR


@dataclass(frozen=True)
class LocalClusterDir:
    """The directory of a `cnm local` cluster."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def password_file(self) -> Path:
        return self.root / "admin-password"

    def node(self, name: str) -> DataDir:
        return DataDir(self.root / name)
