"""The data directory's layout: the names a restarted agent (and an operator) relies on."""

from __future__ import annotations

from pathlib import Path

from cnm.bootstrap.status import BootstrapStatus
from cnm.node.data_dir import DataDir, LocalClusterDir, default_ccs_path, etcd_member_dir
from cnm.node.local_state import LocalState


def test_layout_names_are_stable(tmp_path: Path) -> None:
    # Spelled out on purpose: renaming one of these files strands every existing node's state.
    layout = DataDir(tmp_path)
    assert layout.status_file == tmp_path / "bootstrap-status.json"
    assert layout.local_state_file == tmp_path / "node-state.json"
    assert layout.node_key_file == tmp_path / "node-key"
    assert layout.self_signed_tls.cert_file == tmp_path / "tls/self/cert.pem"
    assert layout.self_signed_tls.key_file == tmp_path / "tls/self/key.pem"
    tls = layout.cluster_tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (
        tmp_path / "tls/cluster/ca.pem",
        tmp_path / "tls/cluster/node.pem",
        tmp_path / "tls/cluster/node.key",
    )
    assert layout.etcd_log == tmp_path / "logs/etcd.log"
    assert layout.agent_log == tmp_path / "agent.log"
    assert etcd_member_dir(default_ccs_path("/p")) == Path("/p/ccs/etcd")
    local = LocalClusterDir(tmp_path)
    assert local.state_file == tmp_path / "state.json"
    assert local.password_file == tmp_path / "admin-password"
    assert local.node("node2").cluster_tls.ca_file == tmp_path / "node2/tls/cluster/ca.pem"


def test_records_land_where_the_layout_says(tmp_path: Path) -> None:
    layout = DataDir(tmp_path)
    BootstrapStatus().save(tmp_path)
    state = LocalState(
        cluster_uuid="u",
        cluster_name="c1.example.com",
        node_uid=1,
        store_endpoints=("https://127.0.0.1:2379",),
        runs_store_member=True,
        member_name="node-1",
        initial_cluster="node-1=https://127.0.0.1:2380",
        initial_cluster_state="new",
        cluster_token="u",
        persistent_path="/p",
        ephemeral_path="/t",
        bigstore_path=None,
        ccs_persistent_path="/p/ccs",
    )
    state.save(tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted([layout.status_file, layout.local_state_file])
    assert LocalState.load(tmp_path) == state
    LocalState.remove(tmp_path)
    BootstrapStatus.remove(tmp_path)
    assert list(tmp_path.iterdir()) == []
