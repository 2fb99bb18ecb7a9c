"""cnm.failpoints: parsing CNM_FAILPOINTS, the no-op when unset, the error and crash actions."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnm import failpoints
from cnm.errors import BootstrapInternalError


def test_unset_means_no_point_enabled_and_a_no_op() -> None:
    # The test run does not set CNM_FAILPOINTS: nothing is enabled, every point returns.
    assert os.environ.get(failpoints.ENV_VAR) is None
    assert not failpoints.ENABLED
    for name in failpoints.FAILPOINTS:
        assert failpoints.failpoint(name) is None


def test_parse_reads_names_and_actions() -> None:
    text = " join.after_admission=crash , voter.after_promote=error,"
    assert failpoints.parse(text) == {
        "join.after_admission": "crash",
        "voter.after_promote": "error",
    }
    assert failpoints.parse("") == {}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("join.after_admission=explode", "expected name=crash or name=error"),
        ("join.after_admission", "expected name=crash or name=error"),
        ("no.such_point=crash", "unknown fault point 'no.such_point'"),
    ],
)
def test_parse_refuses_what_would_silently_test_nothing(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        failpoints.parse(text)


def test_error_action_raises_a_retryable_internal_error() -> None:
    point = failpoints._make({"voter.after_promote": "error"})
    point("voter.after_learner_add")  # another point: nothing
    with pytest.raises(failpoints.FailpointError) as raised:
        point("voter.after_promote")
    assert isinstance(raised.value, BootstrapInternalError)
    assert raised.value.retryable is True
    assert "voter.after_promote" in raised.value.message


def test_crash_action_kills_the_process_with_sigkill() -> None:
    code = "from cnm.failpoints import failpoint; failpoint('create.after_records'); print('alive')"
    env = {**os.environ, failpoints.ENV_VAR: "create.after_records=crash"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -9
    assert "alive" not in done.stdout
    assert "failpoint create.after_records: crash" in done.stderr


def test_a_bad_variable_stops_the_import_with_the_reason() -> None:
    env = {**os.environ, failpoints.ENV_VAR: "create.after_records=maybe"}
    done = subprocess.run(
        [sys.executable, "-c", "import cnm.failpoints"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "expected name=crash or name=error" in done.stderr
