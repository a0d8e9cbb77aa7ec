"""Errors that reach users: each says what went wrong, with which file, and what to do."""

from __future__ import annotations


class DiarkitError(Exception):
    """Base class for errors diarkit reports to users (no traceback needed)."""

    #: HTTP status a server should answer with.
    status = 500
    #: short machine-readable kind, used as the JSON ``error`` field.
    kind = "internal_error"

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        self.message = message
        self.path = path
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class MediaError(DiarkitError):
    """The input cannot be read or decoded as audio."""

    status = 415
    kind = "unsupported_media"


class InputNotFoundError(MediaError):
    status = 400
    kind = "input_not_found"


class OptionsError(DiarkitError):
    """An option (speaker hints, format, language...) is invalid."""

    status = 400
    kind = "bad_options"


class ModelDirectoryError(DiarkitError):
    """The model directory is missing, incomplete or does not match its manifest."""

    status = 500
    kind = "model_directory"


class OutputError(DiarkitError):
    """Results could not be written (read-only or full output folder...)."""

    status = 500
    kind = "output_failed"
