"""Logging of the agent: one line per event, each carrying the node's address.

`text` is for people (`2026-11-29T13:00:00Z 127.0.0.2 INFO cnm.daemon: ...`), `json` is one
object per line for log shippers. Passwords never reach a log line: nothing logs request bodies.

A line that marks a step of the node's life (a bootstrap transition, an admission decision, a
store voter or reachability change, ...) carries `extra=event(name, **fields)`: it is logged once,
at info, and the JSON format writes `"event": name` and each field as a top-level key with a
stable name (docs/operations.md lists them). Tools (the benchmarks, log shippers) read those
instead of the message text, so a message's wording stays free to change. `EVENTS` lists every
event name with its fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Every event a log line may carry, with its fields.
EVENTS = {
    "bootstrap_transition": "action, from_state, state, phase, error_code: a bootstrap step",
    "status_unreadable": "path: the bootstrap status file did not read; it was moved aside",
    "store_member_started": "name, pid: this node's store member (etcd) was spawned",
    "https_switched": "the API now serves the cluster certificate",
    "ca_trusted": "member, fingerprint: a joiner trusted the cluster CA on first use",
    "admission_retry": "member, attempt: a joiner asks again after its member answered 503",
    "cert_renewed": "through, not_after: this node renewed its certificate",
    "join_verifier_made": "uid: a user got its join-proof verifier at a Basic sign-in",
    "join_admission": "joiner_addr, outcome, error_code, node_uid: a member's admission decision",
    "joined": "uid, member: this node joined its cluster",
    "store_voter": "seconds: this node became a store voter (learner add, start, promote)",
    "store_member_removed": "uid, learner, reason: a node's store member was removed",
    "store_change_deferred": "the store refused a member change for now; retried at its pace",
    "store_voters": "voters, previous_voters, voters_wanted: the set of store voters changed",
    "store_reachability": "reachable, detail: the store became reachable or unreachable",
    "store_leader_change": "leader, previous_leader: a new store leader was seen",
    "node_removed": "uid, addr, store_member: a node was removed from the cluster",
    "left_cluster": "uid, cluster: this node was removed and went back to idle, data wiped",
    "node_replaced": "uid, old_addr, addr: a failed node's uid was given to a replacement",
    "replaced_node_idle": "uid: this node was replaced while down; it does not rejoin",
    "voter_replacement": "uid, outcome, reason, down_for: a decision about a dead voter's seat",
    "ghost_node_removed": "uid, reason: a node record that never became a node was removed",
    "store_member_gone": "uid, reason: this node's store member was removed; it runs as a client",
    "backup_written": "file, revision: a store snapshot was written (cluster/backup.py)",
    "store_data_clobbered": "path, cluster_name, cluster_uuid: foreign store data wiped on request",
    "http_support": "enabled: plain HTTP was opened or closed (the cluster's http_support)",
    "sign_in_locked": "user, client: too many failed sign-ins locked this (user, address) pair",
    "sign_in_unlocked": "user, client, by: an admin unlocked a (user, address) pair",
}
# The keys every JSON line has; an event's fields never replace them.
BASE_KEYS = frozenset({"time", "node", "level", "logger", "message", "exception", "event"})


def event(name: str, /, **fields: Any) -> dict[str, Any]:
    """The `extra=` of a log call that marks the event `name` (one of `EVENTS`)."""
    assert name in EVENTS, name
    return {"cnm_event": name, "cnm_fields": fields}


class _TextFormatter(logging.Formatter):
    def __init__(self, addr: str) -> None:
        super().__init__()
        self.addr = addr

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}Z {self.addr} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return line


class _JsonFormatter(logging.Formatter):
    def __init__(self, addr: str) -> None:
        super().__init__()
        self.addr = addr

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "node": self.addr,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        name = getattr(record, "cnm_event", None)
        if name is not None:
            document["event"] = name
            for key, value in getattr(record, "cnm_fields", {}).items():
                if key not in BASE_KEYS:
                    document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, separators=(",", ":"), default=str)


def configure_logging(*, level: str, log_format: str, addr: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = _JsonFormatter(addr) if log_format == "json" else _TextFormatter(addr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers would print a second, differently shaped line per event.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.error").setLevel("WARNING")
    logging.getLogger("httpx").setLevel("WARNING")
