"""How the agent launches etcd (store/etcd_process.py): its environment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cnm.store import etcd_process


def spec_in(tmp_path: Path) -> etcd_process.EtcdMemberSpec:
    return etcd_process.EtcdMemberSpec(
        name="m",
        data_dir=tmp_path / "d",
        addr="127.0.0.1",
        client_port=1,
        peer_port=2,
        ca_file=tmp_path / "ca",
        cert_file=tmp_path / "c",
        key_file=tmp_path / "k",
        initial_cluster="m=https://127.0.0.1:2",
        initial_state="new",
        cluster_token="t",
        log_file=tmp_path / "log",
    )


def test_etcd_runs_one_go_scheduler_thread_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = spec_in(tmp_path)
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    assert etcd_process.etcd_environment(spec)["GOMAXPROCS"] == "1"
    assert "GOMAXPROCS" not in etcd_process.etcd_environment(replace(spec, go_max_procs=None))
    monkeypatch.setenv("GOMAXPROCS", "4")  # the operator's choice wins
    assert etcd_process.etcd_environment(spec)["GOMAXPROCS"] == "4"


def test_go_s_profiler_is_on_only_when_the_agent_s_environment_asks_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(etcd_process.PPROF_ENV, raising=False)
    assert "--enable-pprof" not in etcd_process.etcd_arguments("etcd", spec_in(tmp_path))
    monkeypatch.setenv(etcd_process.PPROF_ENV, "yes")  # only "1" turns it on
    assert "--enable-pprof" not in etcd_process.etcd_arguments("etcd", spec_in(tmp_path))
    monkeypatch.setenv(etcd_process.PPROF_ENV, "1")
    assert "--enable-pprof" in etcd_process.etcd_arguments("etcd", spec_in(tmp_path))
