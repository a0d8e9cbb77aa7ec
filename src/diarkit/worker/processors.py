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

from diarkit.errors import DiarkitError
from diarkit.request import RequestOptions
from diarkit.serving.protocol import CUSTOM_ATTRIBUTES_HEADER
from diarkit.result import TranscriptResult
from diarkit.worker.s3events import content_type_for

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
    def __call__(self, path: Path, *, uri: str, content_type: str,
                 options: RequestOptions) -> TranscriptResult: ...


class LocalProcessor:
    """The pipeline in this process: models are loaded once, here."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto"):
        from diarkit.pipeline import DiarkitPipeline

        self.pipeline = DiarkitPipeline.from_model_dir(model_dir, device=device)

    def __call__(self, path: Path, *, uri: str, content_type: str, options: RequestOptions) -> TranscriptResult:
        return self.pipeline.transcribe(path, uri=uri, options=options)


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

    def __call__(self, path: Path, *, uri: str, content_type: str, options: RequestOptions) -> TranscriptResult:
        headers = {"Content-Type": content_type or content_type_for(path.name),
                   "Accept": "application/json", "Content-Length": str(path.stat().st_size)}
        # the worker asks for JSON and renders the formats itself
        attributes = options.to_custom_attributes(exclude=("format",))
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
