"""One HTTP request, read the same way wherever the model directory is served.

The ``diarkit serve`` HTTP server and the SageMaker handlers (``code/inference.py``) both
go through here: the request's content type (raw media or a JSON envelope), its options
(parsed into ``diarkit.request.RequestOptions``), the output format (Accept header or the
``format`` option), running the pipeline on a media file, and the JSON error body.
Neither adapter holds any of this logic itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from diarkit.errors import DiarkitError, MediaError, OptionsError
from diarkit.request import RequestOptions, parse_custom_attributes
from diarkit.writers import CONTENT_TYPES, RENDERERS, parse_formats, render_bytes

#: SageMaker passes InvokeEndpoint's CustomAttributes to the container in this header.
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
DEFAULT_FORMAT = "json"
JSON_CONTENT_TYPE = "application/json"
RAW_MEDIA_TYPES = ("audio/*", "video/*", "application/octet-stream")
#: ``uri`` of results made from request bodies (there is no file name to take it from).
REQUEST_URI = "audio"

RequestKind = Literal["media", "json"]


class BadRequestError(DiarkitError):
    """The request itself is malformed (empty body, broken JSON envelope...)."""

    status = 400
    kind = "bad_request"


class UnsupportedContentTypeError(MediaError):
    status = 415
    kind = "unsupported_media_type"


class NotAcceptableError(DiarkitError):
    status = 406
    kind = "not_acceptable"


class PayloadTooLargeError(DiarkitError):
    status = 413
    kind = "payload_too_large"


def _media_range(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def request_kind(content_type: str | None) -> RequestKind:
    """Raw media or the JSON envelope; anything else is refused before the body is read."""
    media_type = _media_range(content_type or "") or "application/octet-stream"
    if media_type == JSON_CONTENT_TYPE:
        return "json"
    if media_type == "application/octet-stream" or media_type.split("/", 1)[0] in ("audio", "video"):
        return "media"
    hint = f"send the media bytes with Content-Type {', '.join(RAW_MEDIA_TYPES)}"
    if media_type == "application/x-www-form-urlencoded":
        hint += "; with curl use --data-binary @file -H 'Content-Type: audio/wav'"
    raise UnsupportedContentTypeError(f"unsupported request content type {media_type!r}",
                                      hint=hint + f", or {JSON_CONTENT_TYPE} with audio_base64")


_FORMAT_BY_CONTENT_TYPE = {content_type: fmt for fmt, content_type in CONTENT_TYPES.items()}


def negotiate_format(accept: str | None, override: str | None = None) -> str:
    """The output format: the ``format`` option if given, else the best Accept match."""
    if override:
        return parse_formats(override)[0]
    ranges: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept or "").split(",")):
        media_range = _media_range(item)
        if not media_range:
            continue
        quality = 1.0
        for param in item.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranges.append((-quality, index, media_range))
    if not ranges:
        return DEFAULT_FORMAT
    for _, _, media_range in sorted(ranges):
        if media_range in ("*/*", "*"):
            return DEFAULT_FORMAT
        if media_range in _FORMAT_BY_CONTENT_TYPE:
            return _FORMAT_BY_CONTENT_TYPE[media_range]
        if media_range.endswith("/*"):
            family = media_range[:-1]
            for fmt, content_type in CONTENT_TYPES.items():
                if content_type.startswith(family):
                    return fmt
    raise NotAcceptableError(f"cannot answer with {accept!r}",
                             hint="accept one of " + ", ".join(CONTENT_TYPES.values())
                             + f", or set the format option ({','.join(RENDERERS)})")


@dataclass
class JsonPayload:
    audio: bytes
    options: RequestOptions


def parse_json_payload(data: bytes | str) -> JsonPayload:
    """``{"audio_base64": "...", "options": {...}}`` -> media bytes and options."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the body is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise BadRequestError("the JSON body must be an object with audio_base64 (and options)")
    unknown = sorted(set(document) - {"audio_base64", "options"})
    if unknown:
        raise BadRequestError(f"unknown field(s) in the JSON body: {', '.join(unknown)}",
                              hint="send audio_base64 and, optionally, options")
    encoded = document.get("audio_base64")
    if not isinstance(encoded, str) or not encoded:
        raise BadRequestError("the JSON body has no audio_base64 string")
    try:
        audio = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("audio_base64 is not valid base64") from None
    options = document.get("options") or {}
    if not isinstance(options, dict):
        raise OptionsError("options in the JSON body must be an object")
    return JsonPayload(audio=audio, options=RequestOptions.from_mapping(options, source="the JSON options"))


@dataclass
class Reply:
    body: bytes
    content_type: str


def transcribe_file(pipeline, path: str | os.PathLike, options: RequestOptions, fmt: str,
                    progress=None) -> Reply:
    """Run the pipeline on one media file and render the answer (``progress`` may raise to stop it)."""
    result = pipeline.transcribe(path, uri=REQUEST_URI, options=options, progress=progress)
    return Reply(body=render_bytes(result, fmt), content_type=CONTENT_TYPES[fmt])


def empty_body_error() -> BadRequestError:
    return BadRequestError("the request body is empty", hint="send the media bytes as the body")


def handle_body(pipeline, body: bytes | str, *, content_type: str | None, accept: str | None,
                custom_attributes: str | None) -> Reply:
    """One request whose body is already in memory (the SageMaker toolkits hand it over so)."""
    kind = request_kind(content_type)
    options = parse_custom_attributes(custom_attributes)
    if kind == "json":
        payload = parse_json_payload(body)
        media, options = payload.audio, payload.options.merged(options)
    else:
        media = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    fmt = negotiate_format(accept, options.format)
    if not media:
        raise empty_body_error()
    with tempfile.TemporaryDirectory(prefix="diarkit-") as tmp:
        path = Path(tmp) / "media"
        path.write_bytes(media)
        del media
        return transcribe_file(pipeline, path, options, fmt)


def error_body(exc: DiarkitError) -> dict[str, str]:
    """The JSON error body; the detail leaves out temporary file paths, which mean nothing to callers."""
    detail = exc.message + (f" ({exc.hint})" if exc.hint else "")
    if exc.path:
        detail = detail.replace(exc.path, "request body")
    return {"error": exc.kind, "detail": detail}
