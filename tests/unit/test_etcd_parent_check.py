"""etcd never outlives its agent, even one that dies the instant after spawning it
(store/etcd_process.py): once the parent-death signal is set, the child checks that its parent
is still the agent, and exits with ORPHANED_EXIT when it is not. An agent already gone is
stood in for here by naming a pid that is not the child's parent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from cnm.store import etcd_process
from cnm.store.etcd_process import ORPHANED_EXIT, death_signal_wrapper

COMMAND = [sys.executable, "-c", "print('etcd ran')"]


def _run(prefix: list[str], preexec: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        prefix + COMMAND,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=preexec,  # type: ignore[arg-type]
        check=False,
    )


@pytest.mark.skipif(not shutil.which("setpriv"), reason="util-linux setpriv is not installed")
def test_with_setpriv_the_command_runs_only_under_the_named_parent() -> None:
    prefix, preexec = death_signal_wrapper(os.getpid())
    assert preexec is None and "--pdeathsig" in prefix
    ran = _run(prefix, preexec)
    assert (ran.returncode, ran.stdout.strip()) == (0, "etcd ran")
    orphan = _run(*death_signal_wrapper(os.getpid() + 1_000_000))
    assert (orphan.returncode, orphan.stdout) == (ORPHANED_EXIT, "")


def test_without_setpriv_the_pre_exec_hook_checks_the_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(etcd_process.shutil, "which", lambda name: None)
    prefix, preexec = death_signal_wrapper(os.getpid())
    assert prefix == [] and preexec is not None
    ran = _run(prefix, preexec)
    assert (ran.returncode, ran.stdout.strip()) == (0, "etcd ran")
    orphan = _run(*death_signal_wrapper(os.getpid() + 1_000_000))
    assert (orphan.returncode, orphan.stdout) == (ORPHANED_EXIT, "")
