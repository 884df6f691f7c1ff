"""JSON log lines that carry the request and session ids.

The managed runtime ships stdout to CloudWatch, where one JSON object per line
is searchable by field; ``requestId`` and ``sessionId`` are read from the
context variables, so they appear on every line written while serving a
request or running background work it started, whoever's logger wrote it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback

from ..core.context import request_id_var, session_id_var

logger = logging.getLogger("agentcore_sync")


_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def iso_timestamp(at: float) -> str:
    """``at`` (unix seconds) as the JSON lines spell a time: UTC, milliseconds, ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, message, logger, ids.

    The fields, their names and shapes are the official SDK's, so that queries
    written for its lines find these: a record with an exception adds
    ``errorType``, ``errorMessage``, ``stackTrace`` (the traceback's lines) and
    ``location`` (``path:function:line`` of the logging call).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": iso_timestamp(record.created),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["requestId"] = request_id
        session_id = session_id_var.get()
        if session_id is not None:
            entry["sessionId"] = session_id
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, tb = record.exc_info
            entry["errorType"] = exc_type.__name__
            entry["errorMessage"] = str(exc)
            entry["stackTrace"] = traceback.format_exception(exc_type, exc, tb)
            entry["location"] = f"{record.pathname}:{record.funcName}:{record.lineno}"
        # json.dumps escapes CR, LF and control characters; the three other line
        # breaks some readers split on are escaped here. Nothing taken from a
        # request can start a forged line of its own.
        return json.dumps(entry, ensure_ascii=False, default=str).translate(_LINE_BREAKS)


def configure_logging() -> None:
    """Log JSON lines to stderr, unless the application configured logging itself.

    Like ``logging.basicConfig``, this does nothing when the root logger already
    has handlers, so a user's own configuration always wins.
    """
    root = logging.getLogger()
    if root.handlers:
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    # waitress warns "Task queue depth is N" for every request that waits for a
    # thread: under load, one line per request, written when the server is
    # busiest. Queueing is expected here (admission control bounds it), so only
    # its errors are kept.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
