"""The sign-in lockout's counting (cluster/sign_in.py) and the per-address failure limiter
(api/auth.py), on a clock the test sets."""

from __future__ import annotations

import pytest

from cnm.api.auth import FailureLimiter
from cnm.cluster.records import SignInFailures
from cnm.cluster.sign_in import LockoutPolicy, counted
from cnm.errors import TooManyRequests

POLICY = LockoutPolicy(threshold=3, counter_reset=60, duration=600)


def test_threshold_failures_within_the_window_lock_the_pair() -> None:
    record = SignInFailures(uid=1, client="192.0.2.1")
    for now in (100.0, 110.0):
        record = counted(record, POLICY, now)
        assert record.locked_until == 0
    record = counted(record, POLICY, 120.0)
    assert (record.failures, record.locked_until) == (3, 720.0)
    assert counted(record, POLICY, 130.0) is record  # locked: nothing more is counted


def test_the_window_resets_and_a_lock_expires() -> None:
    record = counted(counted(SignInFailures(), POLICY, 0.0), POLICY, 10.0)
    assert record.failures == 2
    later = counted(record, POLICY, 61.0)  # the window started at 0: a new one
    assert (later.failures, later.window_start, later.locked_until) == (1, 61.0, 0.0)
    locked = counted(counted(later, POLICY, 62.0), POLICY, 63.0)
    assert locked.locked_until == 663.0
    after = counted(locked, POLICY, 700.0)  # the lock ran out: counting starts over
    assert (after.failures, after.locked_until) == (1, 0.0)


def test_failure_limiter_refuses_an_address_past_its_burst() -> None:
    limiter = FailureLimiter(burst=3, per_second=0.5)
    for _ in range(3):
        limiter.check("192.0.2.1", 0.0)
        limiter.failed("192.0.2.1", 0.0)
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("192.0.2.1", 0.0)
    assert refused.value.details["retry_after"] == 2
    limiter.check("198.51.100.1", 0.0)  # another address is not affected
    limiter.check("192.0.2.1", 2.0)  # refilled: one more guess
    limiter.failed("192.0.2.1", 2.0)
    with pytest.raises(TooManyRequests):
        limiter.check("192.0.2.1", 2.5)


def test_failure_limiter_is_bounded() -> None:
    limiter = FailureLimiter(burst=1, max_addresses=2)
    for address in ("a", "b", "c"):
        limiter.failed(address, 0.0)
    limiter.check("a", 0.0)  # forgotten, the oldest
    with pytest.raises(TooManyRequests):
        limiter.check("c", 0.0)
