"""uvicorn: the server class whose signal handling ``diarkit serve`` adjusts (0.3x)."""

from __future__ import annotations

from uvicorn import Config, Server

__all__ = ["Config", "Server", "SERVER_ATTRIBUTES"]

#: what diarkit overrides or reads on ``uvicorn.Server``
SERVER_ATTRIBUTES = ("capture_signals", "handle_exit", "should_exit", "run")
