"""Named fault points: where a test may kill the agent, or make a step fail, on purpose.

In the spirit of etcd's gofail. Every step of a bootstrap action or of a store membership change
that leaves durable state behind calls `failpoint("<name>")` right after that state is written.
A point does something only when the environment variable `CNM_FAILPOINTS` names it when the
agent starts (`CNM_FAILPOINTS=join.after_admission=crash,voter.after_promote=error`):

- `crash`: the agent is killed right there with SIGKILL (no cleanup, no flush; its etcd child
  dies with it through the parent-death signal), the worst a power cut can do to this process;
- `error`: the step raises `FailpointError`, a retryable internal error, as a lost store
  connection would.

The variable is read once at import. Unset (production), `failpoint` is a function that returns
at once: no lookup, no allocation. `FAILPOINTS` lists every name with what it interrupts, so the
crash walk (tests/cluster/test_crash_points.py) can check that each point in the code is listed
and walked.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType

from cnm.errors import BootstrapInternalError

ENV_VAR = "CNM_FAILPOINTS"

FAILPOINTS: Mapping[str, str] = MappingProxyType(
    {
        # create_cluster (bootstrap/create.py)
        "create.after_certificates": "create: cluster CA and node certificate written",
        "create.after_store_start": "create: the first etcd member started and ready",
        "create.after_records": "create: cluster, node, admin and license records written",
        "create.after_local_state": "create: local state saved, runtime not loaded yet",
        # join_cluster, the joiner (bootstrap/join.py)
        "join.after_ca_trusted": "join (joiner): the cluster CA fetched and trusted",
        "join.after_admission": "join (joiner): the member admitted it (uid allocated)",
        "join.after_certs_written": "join (joiner): its certificate and the CA written",
        "join.after_record_completed": "join (joiner): its node record completed in the store",
        # join_cluster, the member that admits (cluster/membership.py)
        "member.after_uid_allocated": "join (member): uid, node record and key index written",
        "member.before_answer": "join (member): the grant built, not answered yet",
        # voter promotion (cluster/voters.py)
        "voter.after_learner_add": "voter: added as an etcd learner, member not started",
        "voter.after_member_start": "voter: its etcd member started as a learner",
        "voter.after_promote": "voter: promoted to a voting member, role not recorded",
        "voter.after_role_recorded": "voter: store_role voter recorded",
        # replacement join, the member that admits (cluster/repair.py)
        "replace.after_member_removed": "replace: the failed node's store member removed",
        "replace.after_records": "replace: the failed node's records given to the joiner",
        # recover_cluster (bootstrap/recover.py)
        "recover.after_certificates": "recover: the snapshot's CA and a node certificate written",
        "recover.after_store_start": "recover: the new one-member store started and ready",
        "recover.after_records": "recover: the snapshot's records written to the new store",
        "recover.after_local_state": "recover: local state saved, runtime not loaded yet",
        # node removal, the acting node (cluster/removal.py)
        "remove.after_member_removed": "remove: the node's store member removed",
        "remove.after_records": "remove: its records deleted and the removed marker written",
        # node removal, the removed node leaving (bootstrap/manager.py)
        "leave.after_runtime_stopped": "leave: the removed node's runtime stopped, data kept",
        "leave.after_wipe": "leave: its cluster data wiped, status not reset yet",
        # voter healing, the acting node (cluster/voter_healing.py)
        "heal.after_member_removed": "heal: a dead voter's store member removed",
        "heal.after_client_recorded": "heal: the dead voter's record set to store_role client",
    }
)
ACTIONS = ("crash", "error")


class FailpointError(BootstrapInternalError):
    """The `error` action of a fault point: retryable, as a transient store failure is."""


def parse(text: str) -> dict[str, str]:
    """`name=action[,name=action...]` → {name: action}; raises ValueError naming what is wrong
    (an unknown name or action must not silently test nothing)."""
    active: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, action = item.partition("=")
        name, action = name.strip(), action.strip()
        if not sep or action not in ACTIONS:
            raise ValueError(f"{ENV_VAR}: {item!r}: expected name=crash or name=error")
        if name not in FAILPOINTS:
            known = ", ".join(sorted(FAILPOINTS))
            raise ValueError(f"{ENV_VAR}: unknown fault point {name!r}; known: {known}")
        active[name] = action
    return active


def _trigger(name: str, action: str) -> None:
    if action == "crash":
        # Written straight to the fd: the test reads the agent's log to see which point fired.
        os.write(sys.stderr.fileno(), f"failpoint {name}: crash (SIGKILL)\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
    raise FailpointError(f"fault point {name} fired (error); the step can be retried")


def _make(active: Mapping[str, str]) -> Callable[[str], None]:
    if not active:

        def off(name: str) -> None:
            """No fault point is enabled: nothing to do."""

        return off

    def on(name: str) -> None:
        action = active.get(name)
        if action is not None:
            _trigger(name, action)

    return on


_ACTIVE = parse(os.environ.get(ENV_VAR, ""))
ENABLED = frozenset(_ACTIVE)
# Chosen once: `failpoint(name)` runs the action enabled for `name`, if any.
failpoint: Callable[[str], None] = _make(_ACTIVE)
