"""uvicorn: the server class whose signal handling ``diarkit serve`` adjusts (0.3x)."""

from __future__ import annotations

import contextlib
import signal
import threading

from uvicorn import Config, Server

__all__ = ["Config", "ExitZeroServer", "Server", "SERVER_ATTRIBUTES"]

#: what diarkit overrides or reads on ``uvicorn.Server``
SERVER_ATTRIBUTES = ("capture_signals", "handle_exit", "should_exit", "run")


class ExitZeroServer(Server):
    """uvicorn without re-raising SIGINT/SIGTERM after its clean stop (uvicorn re-raises the
    signal it caught, so the process would die by it): the server exits 0, no traceback."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
