"""Logging of the agent: one line per event, each carrying the node's address.

`text` is for people (`2026-11-29T13:00:00Z 127.0.0.2 INFO cnm.daemon: ...`), `json` is one
object per line for log shippers. Passwords never reach a log line: nothing logs request bodies.

Events an operator follows (bootstrap transitions, admission decisions, store voter and
reachability changes) go through `log_event`: one info line each, and in JSON an `event` name
plus fields with stable names (listed in docs/operations.md) beside the usual keys.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# The keys every JSON line has; an event's fields never replace them.
_BASE_KEYS = frozenset({"time", "node", "level", "logger", "message", "exception", "event"})


def log_event(logger: logging.Logger, event: str, message: str, **fields: Any) -> None:
    """One info line for `event`; `fields` become top-level keys of the JSON line."""
    logger.info(message, extra={"cnm_event": event, "cnm_fields": fields})


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
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        event = getattr(record, "cnm_event", None)
        if event is not None:
            document["event"] = event
            for key, value in getattr(record, "cnm_fields", {}).items():
                if key not in _BASE_KEYS:
                    document[key] = value
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
