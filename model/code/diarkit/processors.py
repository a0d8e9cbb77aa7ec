"""Where the worker sends a media file: the pipeline in this process, or a ``diarkit serve`` URL.

Both return a TranscriptResult. A ``DiarkitError`` means the file failed for good (bad
media, bad options, or the server said so) and is reported as a failure;
``TransientError`` means "try again later" (the server is down or overloaded) and the
work item is left for redelivery.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from .errors import DiarkitError
from .options import CUSTOM_ATTRIBUTES_HEADER, parse_custom_attributes
from .result import TranscriptResult
from .s3events import content_type_for

logger = logging.getLogger(__name__)


class TransientError(Exception):
    """Not the file's fault: retry later."""


class RemoteError(DiarkitError):
    """The serving container answered with an error for this file."""

    def __init__(self, message: str, *, status: int, kind: str):
        super().__init__(message)
        self.status = status
        self.kind = kind


class Processor(Protocol):
    def __call__(self, path: Path, *, uri: str, content_type: str, attributes: str) -> TranscriptResult: ...


def _split_attributes(text: str | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for part in (text or "").split(";"):
        key, sep, value = part.partition("=")
        if part.strip():
            values[key.strip().lower().replace("-", "_")] = value.strip() if sep else ""
    return values


def build_custom_attributes(num_speakers: int | None = None, min_speakers: int | None = None,
                            max_speakers: int | None = None, language: str | None = None,
                            extra: str | None = None) -> str:
    """Flags and a custom-attributes string -> one string (flags win), checked by the server's rules."""
    values = _split_attributes(extra)
    for key, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                       ("max_speakers", max_speakers), ("language", language)):
        if value is not None:
            values[key] = str(value)
    text = ";".join(f"{k}={v}" if v != "" else k for k, v in values.items())
    parse_custom_attributes(text)  # raises OptionsError, as `diarkit serve` would per request
    return text


def without_format(attributes: str) -> str:
    """The attributes minus ``format``: the worker asks for JSON and renders formats itself."""
    return ";".join(f"{k}={v}" for k, v in _split_attributes(attributes).items() if k != "format")


class LocalProcessor:
    """The pipeline in this process: models are loaded once, here."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto"):
        from .pipeline import DiarkitPipeline

        self.pipeline = DiarkitPipeline.from_model_dir(model_dir, device=device)

    def __call__(self, path: Path, *, uri: str, content_type: str, attributes: str) -> TranscriptResult:
        options = parse_custom_attributes(attributes)
        return self.pipeline.transcribe(path, uri=uri, **options.transcribe_kwargs())


class HttpProcessor:
    """POST the file to a ``diarkit serve`` (or SageMaker container) ``/invocations``, streamed."""

    TRANSIENT_STATUSES = {429, 502, 503, 504}

    def __init__(self, base_url: str, timeout: float = 3600.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def wait_ready(self, timeout: float = 300.0, interval: float = 1.0) -> None:
        """Wait for ``GET /ping`` to answer 200, as SageMaker does before sending traffic."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/ping", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = exc
            else:
                last = None
            if time.monotonic() > deadline:
                raise TransientError(f"{self.base_url}/ping did not answer 200 within {timeout:.0f} s ({last})")
            time.sleep(interval)

    def __call__(self, path: Path, *, uri: str, content_type: str, attributes: str) -> TranscriptResult:
        headers = {"Content-Type": content_type or content_type_for(path.name),
                   "Accept": "application/json", "Content-Length": str(path.stat().st_size)}
        attributes = without_format(attributes)
        if attributes:
            headers[CUSTOM_ATTRIBUTES_HEADER] = attributes
        with open(path, "rb") as body:
            request = urllib.request.Request(f"{self.base_url}/invocations", data=body,
                                             headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as exc:
                self._raise_for(exc.code, exc.read())
            except (urllib.error.URLError, OSError) as exc:
                raise TransientError(f"{self.base_url}/invocations: {exc}") from exc
        try:
            data = json.loads(payload)
            result = TranscriptResult.from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteError(f"the server's answer is not diarkit JSON: {exc}", status=502,
                              kind="bad_response") from exc
        result.uri = uri or result.uri
        return result

    def _raise_for(self, status: int, body: bytes) -> None:
        text = body.decode("utf-8", "replace").strip()
        kind, message = "server_error", text or f"HTTP {status}"
        try:
            data = json.loads(text)
            if isinstance(data, dict):
                kind = str(data.get("error") or kind)
                message = str(data.get("detail") or data.get("message") or data.get("error") or message)
        except ValueError:
            pass
        if status in self.TRANSIENT_STATUSES:
            raise TransientError(f"{self.base_url}/invocations answered {status}: {message}")
        raise RemoteError(message, status=status, kind=kind)
