"""S3 event notifications, and the names derived from them.

S3 delivers events at least once and URL-encodes keys. The worker (and, in a copy kept
in step by a test, the Lambda trigger in ``scripts/lambda_trigger/handler.py``) turns
every event into an ``S3Object`` and derives a deterministic inference id from bucket,
key and version/ETag: a redelivered event gets the same id, so its output name is known
before any work is done and a second delivery is recognized.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

#: Fixed namespace for uuid5 inference ids. Changing it changes every output name.
INFERENCE_NAMESPACE = uuid.UUID("5b0d3f1e-6c2a-4d8e-9a51-7f3c2b8e4d10")

#: Content types by extension, as sent to the endpoint. ffmpeg sniffs the real format;
#: the type only has to be a plausible media type.
CONTENT_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4", ".aac": "audio/aac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
    ".opus": "audio/opus", ".webm": "audio/webm", ".mp4": "video/mp4", ".m4v": "video/mp4",
    ".mkv": "video/x-matroska", ".mov": "video/quicktime",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class S3Object:
    """One created object, as named by an event (key already URL-decoded)."""

    bucket: str
    key: str
    etag: str = ""
    version_id: str | None = None
    size: int | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def stem(self) -> str:
        return PurePosixPath(self.key).stem or "audio"

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix.lower()


@dataclass
class ParsedMessage:
    """What one queue message holds: created objects, or an S3 test event, or nothing useful."""

    objects: list[S3Object] = field(default_factory=list)
    test_event: bool = False
    ignored: list[str] = field(default_factory=list)  # event names that are not ObjectCreated


def inference_id(bucket: str, key: str, etag: str = "", version_id: str | None = None) -> str:
    """uuid5 of bucket, key and version (or ETag): the same object always gets the same id."""
    revision = version_id or etag.strip('"')
    return str(uuid.uuid5(INFERENCE_NAMESPACE, f"{bucket}/{key}#{revision}"))


def object_inference_id(obj: S3Object) -> str:
    return inference_id(obj.bucket, obj.key, obj.etag, obj.version_id)


def content_type_for(key: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), DEFAULT_CONTENT_TYPE)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix); the prefix keeps what the user wrote."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix


def as_prefix(prefix: str) -> str:
    """A key prefix that names a folder: no leading slash, one trailing slash (or empty)."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def parse_message(body: str | dict[str, Any]) -> ParsedMessage:
    """Parse an S3 notification as it reaches a queue: direct, through SNS, or EventBridge.

    Raises ValueError for anything that is not an S3 notification.
    """
    data = json.loads(body) if isinstance(body, str) else body
    if not isinstance(data, dict):
        raise ValueError("message body is not a JSON object")
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        return parse_message(data["Message"])  # S3 -> SNS -> SQS without raw delivery
    if data.get("Event") == "s3:TestEvent":
        return ParsedMessage(test_event=True)
    if data.get("source") == "aws.s3" and isinstance(data.get("detail"), dict):
        return _parse_eventbridge(data)
    records = data.get("Records")
    if not isinstance(records, list):
        raise ValueError("not an S3 event notification (no Records)")
    parsed = ParsedMessage()
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"record {index} is not an object")
        name = str(record.get("eventName", ""))
        if record.get("eventSource") != "aws:s3" or not name.startswith("ObjectCreated:"):
            parsed.ignored.append(name or "?")
            continue
        s3 = _mapping(record, "s3", index)
        obj = _mapping(s3, "object", index)
        parsed.objects.append(S3Object(
            bucket=_text(_mapping(s3, "bucket", index), "name", index), key=unquote_plus(_text(obj, "key", index)),
            etag=str(obj.get("eTag", "")).strip('"'), version_id=_optional_text(obj.get("versionId")),
            size=_size(obj.get("size")),
        ))
    return parsed


def _mapping(data: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise ValueError(f"record {index}: {name} is not an object")
    return value


def _text(data: dict[str, Any], name: str, index: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"record {index}: {name} is not a non-empty string")
    return value


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_eventbridge(data: dict[str, Any]) -> ParsedMessage:
    """EventBridge "Object Created" events carry keys unencoded."""
    if data.get("detail-type") != "Object Created":
        return ParsedMessage(ignored=[str(data.get("detail-type"))])
    detail = data["detail"]
    obj = _mapping(detail, "object", 0)
    return ParsedMessage(objects=[S3Object(
        bucket=_text(_mapping(detail, "bucket", 0), "name", 0), key=_text(obj, "key", 0),
        etag=str(obj.get("etag", "")).strip('"'), version_id=_optional_text(obj.get("version-id")),
        size=_size(obj.get("size")),
    )])


def is_under(bucket: str, key: str, locations: list[tuple[str, str]]) -> bool:
    """True when s3://bucket/key lies under one of the (bucket, prefix) locations."""
    return any(bucket == b and key.startswith(p) for b, p in locations)
