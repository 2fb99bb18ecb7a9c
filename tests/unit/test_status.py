"""BootstrapStatus: the state machine's transitions, its API shape, and its durable record."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cnm.bootstrap.status import (
    ACTION_STATES,
    BootstrapState,
    BootstrapStatus,
    UnreadableStatus,
)
from cnm.errors import (
    BootstrapInternalError,
    ConfigError,
    ConnectError,
    PathError,
)
from cnm.node.data_dir import STATUS_FILE

ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_state_values_are_the_api_strings() -> None:
    assert [s.value for s in BootstrapState] == [
        "idle",
        "initiated",
        "creating_cluster",
        "joining_cluster",
        "recovering_cluster",
        "error",
        "completed",
    ]
    assert ACTION_STATES == {
        "create_cluster": BootstrapState.CREATING_CLUSTER,
        "join_cluster": BootstrapState.JOINING_CLUSTER,
        "recover_cluster": BootstrapState.RECOVERING_CLUSTER,
    }


def test_which_states_accept_a_request_and_which_are_in_progress() -> None:
    accepting = {s for s in BootstrapState if s.accepts_request}
    in_progress = {s for s in BootstrapState if s.in_progress}
    assert accepting == {BootstrapState.IDLE, BootstrapState.ERROR}
    assert in_progress == {
        BootstrapState.INITIATED,
        BootstrapState.CREATING_CLUSTER,
        BootstrapState.JOINING_CLUSTER,
        BootstrapState.RECOVERING_CLUSTER,
    }


def test_idle_to_api_is_only_the_state() -> None:
    assert BootstrapStatus().to_api() == {"state": "idle"}


def test_initiated() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    status = BootstrapStatus().initiated("create_cluster")
    after = datetime.now(UTC)
    assert status.state is BootstrapState.INITIATED
    assert status.action == "create_cluster"
    assert status.start_time is not None and before <= status.start_time <= after
    assert status.start_time.microsecond == 0  # whole seconds, as the API shows them
    assert status.end_time is None
    body = status.to_api()
    assert body == {"state": "initiated", "start_time": body["start_time"], "phase": "checks"}
    assert ISO_Z.fullmatch(body["start_time"])


@pytest.mark.parametrize("action", sorted(ACTION_STATES))
def test_running_takes_the_action_state(action: str) -> None:
    status = BootstrapStatus().initiated(action).running("store")
    assert status.state is ACTION_STATES[action]
    assert status.phase == "store"
    assert status.to_api()["state"] == ACTION_STATES[action].value
    assert status.to_api()["phase"] == "store"


def test_initiated_starts_over_from_an_earlier_error(tmp_path: Path) -> None:
    failed = (
        BootstrapStatus()
        .initiated("create_cluster")
        .running("certificates")
        .created(tmp_path / "tls")
        .failed(ConfigError("cluster.name: bad"))
    )
    again = failed.initiated("create_cluster")
    assert again.state is BootstrapState.INITIATED
    assert again.error_code is None and again.error_details is None
    assert again.end_time is None
    assert again.created_paths == ()


def test_created_accumulates_paths_in_order(tmp_path: Path) -> None:
    status = BootstrapStatus().initiated("create_cluster")
    status = status.created(tmp_path / "a").created(tmp_path / "b")
    assert status.created_paths == (str(tmp_path / "a"), str(tmp_path / "b"))
    assert "created_paths" not in status.to_api()


def test_completed() -> None:
    status = BootstrapStatus().initiated("create_cluster").running("records").completed()
    assert status.state is BootstrapState.COMPLETED
    assert status.phase is None
    assert status.start_time is not None and status.end_time is not None
    assert status.start_time <= status.end_time
    body = status.to_api()
    assert set(body) == {"state", "start_time", "end_time"}
    assert body["state"] == "completed"
    assert ISO_Z.fullmatch(body["start_time"]) and ISO_Z.fullmatch(body["end_time"])


def test_failed_carries_code_details_phase_and_retryable() -> None:
    status = (
        BootstrapStatus()
        .initiated("create_cluster")
        .running("store")
        .failed(PathError("node.paths.persistent_path: /x does not exist", path="/x"))
    )
    assert status.state is BootstrapState.ERROR
    body = status.to_api()
    assert set(body) == {"state", "start_time", "end_time", "error_code", "error_details"}
    assert body["error_code"] == "path_error"
    assert body["error_details"] == {
        "message": "node.paths.persistent_path: /x does not exist",
        "path": "/x",
        "retryable": False,
        "phase": "store",
    }
    assert "phase" not in body  # phase is shown at the top only while in progress


def test_retryable_follows_the_error_class() -> None:
    start = BootstrapStatus().initiated("join_cluster")
    connect = start.failed(ConnectError("cluster.nodes: nothing reachable")).to_api()
    internal = start.failed(BootstrapInternalError("boom")).to_api()
    config = start.failed(ConfigError("cluster.name: bad")).to_api()
    assert connect["error_details"]["retryable"] is True
    assert internal["error_details"]["retryable"] is True
    assert config["error_details"]["retryable"] is False


def test_error_fields_appear_only_in_error() -> None:
    status = BootstrapStatus().initiated("create_cluster")
    for step in (status, status.running("store"), status.completed()):
        body = step.to_api()
        assert "error_code" not in body and "error_details" not in body
    # A record that says error without a code still answers a code the API knows.
    assert BootstrapStatus(state=BootstrapState.ERROR).to_api() == {
        "state": "error",
        "error_code": "internal_error",
        "error_details": {},
    }


def test_to_api_is_json_and_does_not_share_details() -> None:
    status = BootstrapStatus().initiated("create_cluster").failed(ConfigError("m", fields=["x"]))
    body = status.to_api()
    json.dumps(body)
    body["error_details"]["message"] = "changed"
    assert status.to_api()["error_details"]["message"] == "m"


# --- persistence --------------------------------------------------------------------------------


def _sample_records(tmp_path: Path) -> list[BootstrapStatus]:
    initiated = BootstrapStatus().initiated("create_cluster")
    running = initiated.running("store").created(tmp_path / "tls").created(tmp_path / "etcd")
    return [
        BootstrapStatus(),
        initiated,
        running,
        running.completed(),
        running.failed(ConfigError("cluster.name: bad", fields=["cluster.name"])),
    ]


def test_save_load_round_trip(tmp_path: Path) -> None:
    for record in _sample_records(tmp_path):
        record.save(tmp_path)
        loaded = BootstrapStatus.load(tmp_path)
        assert loaded == record
        assert loaded.to_api() == record.to_api()


def test_load_without_a_file_is_idle(tmp_path: Path) -> None:
    assert BootstrapStatus.load(tmp_path) == BootstrapStatus()
    assert not (tmp_path / STATUS_FILE).exists()  # loading writes nothing


def test_saved_file_is_readable_json_with_the_api_strings(tmp_path: Path) -> None:
    status = BootstrapStatus().initiated("create_cluster").running("records")
    status.save(tmp_path)
    document: dict[str, Any] = json.loads((tmp_path / STATUS_FILE).read_text())
    assert document["state"] == "creating_cluster"
    assert document["action"] == "create_cluster"
    assert document["phase"] == "records"
    assert ISO_Z.fullmatch(document["start_time"])
    assert document["end_time"] is None


def test_save_leaves_no_temp_file_and_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        for record in _sample_records(tmp_path):
            record.save(data_dir)
            assert sorted(p.name for p in data_dir.iterdir()) == [STATUS_FILE]
            mode = stat.S_IMODE((data_dir / STATUS_FILE).stat().st_mode)
            assert mode == 0o600, oct(mode)
    finally:
        os.umask(old_umask)


def test_save_replaces_the_file_atomically(tmp_path: Path) -> None:
    BootstrapStatus().initiated("create_cluster").save(tmp_path)
    inode = (tmp_path / STATUS_FILE).stat().st_ino
    BootstrapStatus().initiated("create_cluster").running("store").save(tmp_path)
    # A new file renamed over the old one, never the old one rewritten in place.
    assert (tmp_path / STATUS_FILE).stat().st_ino != inode


def test_a_failed_write_keeps_the_old_record_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = BootstrapStatus().initiated("create_cluster")
    first.save(tmp_path)
    before = (tmp_path / STATUS_FILE).read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    # The crash comes between writing the temp file and renaming it over the record.
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        first.running("store").save(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / STATUS_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATUS_FILE]
    assert BootstrapStatus.load(tmp_path) == first


def test_save_creates_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "yet"
    BootstrapStatus().save(data_dir)
    assert BootstrapStatus.load(data_dir) == BootstrapStatus()


def test_remove(tmp_path: Path) -> None:
    BootstrapStatus().initiated("create_cluster").save(tmp_path)
    BootstrapStatus.remove(tmp_path)
    assert not (tmp_path / STATUS_FILE).exists()
    BootstrapStatus.remove(tmp_path)  # removing twice is fine


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "JSONDecodeError"),  # a rename that reached the disk before the data
        (b'{"state": "joining_clu', "JSONDecodeError"),  # torn
        (b"[]", "not a JSON object"),
        (b'{"state": "dancing"}', "ValueError"),
        (b'{"action": "create_cluster"}', "KeyError"),
        (b'{"state": "error", "start_time": "yesterday"}', "ValueError"),
        (b'{"state": "error", "phase": 7}', "phase is int"),
        (b'{"state": "error", "created_paths": "/var"}', "created_paths is not a list"),
        (b'{"state": "error", "notes": ["a"]}', "notes is list"),
        (b'{"state": "error", "error_details": "x"}', "error_details is str"),
    ],
)
def test_a_file_that_is_not_a_status_is_unreadable_not_a_crash(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / STATUS_FILE).write_bytes(content)
    with pytest.raises(UnreadableStatus) as raised:
        BootstrapStatus.load(tmp_path)
    assert raised.value.path == tmp_path / STATUS_FILE
    assert reason in raised.value.reason
    assert (tmp_path / STATUS_FILE).read_bytes() == content  # loading changes nothing


def test_only_a_change_of_state_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    status = BootstrapStatus().initiated("join_cluster")
    status.save(tmp_path)
    assert len(synced) == 2  # the file, then its directory
    synced.clear()
    running = status.running("handshake")
    running.save(tmp_path, durable=False)
    assert synced == []
    assert BootstrapStatus.load(tmp_path) == running  # written all the same
