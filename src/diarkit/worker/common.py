"""What the queue and folder workers share: stopping on a signal, and failure reports."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from diarkit.errors import DiarkitError
from diarkit.worker.notifications import timestamp

class Shutdown(BaseException):
    """SIGTERM or SIGINT: give the work item in flight back (BaseException: nothing swallows it)."""


def install_signal_handlers() -> None:
    def handler(signum, frame):  # noqa: ARG001
        # a second signal during the hand-back must not interrupt it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def error_document(kind: str, message: str, status: int, **extra: Any) -> str:
    return json.dumps({"error": kind, "message": message, "status": status, "time": timestamp(), **extra},
                      ensure_ascii=False, indent=2) + "\n"


def classify(exc: Exception, local: Path, shown: str) -> tuple[str, str, int]:
    """(kind, one-line message, status) for a failure report, naming the input as users know it."""
    if isinstance(exc, DiarkitError):
        kind, message, status = exc.kind, str(exc), exc.status
    else:
        kind, message, status = "internal_error", f"unexpected error: {type(exc).__name__}: {exc}", 500
    return kind, message.replace(str(local), shown), status
