"""S3 ObjectCreated -> SageMaker ``InvokeEndpointAsync``: the trigger of the async endpoint.

Zipped on its own by ``scripts/deploy_async.py`` (stdlib and the boto3 of the Lambda
runtime only). Settings come from the environment the deploy script sets:

    ENDPOINT_NAME                endpoint to invoke (required)
    INPUT_PREFIX                 only keys under it are sent (the S3 filter says the same)
    OUTPUT_PATH, FAILURE_PATH    s3:// locations whose objects are never sent (no loops)
    INVOCATION_TIMEOUT_SECONDS   default 3600, the maximum
    REQUEST_TTL_SECONDS          optional, 60-21600
    CUSTOM_ATTRIBUTES            optional, e.g. num_speakers=2;language=en
    ACCEPT                       default application/json

The InferenceId is a uuid5 of bucket, key and version/ETag, so a redelivered event is
recognizable in the notifications. ``inference_id`` and ``content_type_for`` must stay
identical to ``diarkit.worker.s3events`` (tests/test_trigger.py checks).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

logger = logging.getLogger()
logger.setLevel(logging.INFO)

INFERENCE_NAMESPACE = uuid.UUID("5b0d3f1e-6c2a-4d8e-9a51-7f3c2b8e4d10")
CONTENT_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4", ".aac": "audio/aac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
    ".opus": "audio/opus", ".webm": "audio/webm", ".mp4": "video/mp4", ".m4v": "video/mp4",
    ".mkv": "video/x-matroska", ".mov": "video/quicktime",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: errors that retrying the same request cannot fix: reported, not raised
PERMANENT_ERRORS = {"ValidationError", "ValidationException", "ModelError", "AccessDeniedException"}


def inference_id(bucket: str, key: str, etag: str = "", version_id: str | None = None) -> str:
    revision = version_id or etag.strip('"')
    return str(uuid.uuid5(INFERENCE_NAMESPACE, f"{bucket}/{key}#{revision}"))


def content_type_for(key: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), DEFAULT_CONTENT_TYPE)


def _location(uri: str) -> tuple[str, str] | None:
    if not uri:
        return None
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    input_prefix: str = ""
    excluded: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (bucket, prefix)
    invocation_timeout: int = 3600
    request_ttl: int | None = None
    custom_attributes: str = ""
    accept: str = "application/json"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        excluded = tuple(loc for loc in (_location(env.get("OUTPUT_PATH", "")),
                                         _location(env.get("FAILURE_PATH", ""))) if loc)
        ttl = env.get("REQUEST_TTL_SECONDS")
        return cls(endpoint_name=env["ENDPOINT_NAME"], input_prefix=env.get("INPUT_PREFIX", ""),
                   excluded=excluded, invocation_timeout=int(env.get("INVOCATION_TIMEOUT_SECONDS", "3600")),
                   request_ttl=int(ttl) if ttl else None, custom_attributes=env.get("CUSTOM_ATTRIBUTES", ""),
                   accept=env.get("ACCEPT", "application/json"))


_CLIENT = None


def make_client(endpoint_url: str | None = None):
    """sagemaker-runtime with throttling and 5xx retried (botocore standard mode, backoff)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=20)
    return boto3.client("sagemaker-runtime", endpoint_url=endpoint_url, config=config)


def default_client():
    """One client per Lambda container, reused across invocations."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = make_client()
    return _CLIENT


def _records(event: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """(S3 records, is a test event); S3 -> SNS -> Lambda envelopes are opened."""
    if event.get("Event") == "s3:TestEvent":
        return [], True
    records = []
    for record in event.get("Records", []):
        if record.get("EventSource") == "aws:sns" or "Sns" in record:
            inner, test = _records(json.loads(record["Sns"]["Message"]))
            if test:
                return [], True
            records.extend(inner)
        else:
            records.append(record)
    return records, False


def skip_reason(settings: Settings, record: dict[str, Any], bucket: str, key: str) -> str | None:
    if record.get("eventSource") != "aws:s3" or not str(record.get("eventName", "")).startswith("ObjectCreated"):
        return f"not an ObjectCreated event ({record.get('eventName')})"
    if key.endswith("/"):
        return "a folder marker"
    if any(bucket == b and key.startswith(p) for b, p in settings.excluded):
        return "under the output or failure prefix"
    if not key.startswith(settings.input_prefix):
        return "outside the input prefix"
    return None


def handle(event: dict[str, Any], client=None, settings: Settings | None = None) -> dict[str, list]:
    """Invoke the endpoint for every created object; returns what was invoked, skipped, failed.

    Raises RuntimeError when an invocation failed for a reason worth retrying (Lambda then
    retries the event; the same InferenceId makes the duplicate recognizable).
    """
    settings = settings or Settings.from_env()
    summary: dict[str, list] = {"invoked": [], "skipped": [], "failed": []}
    records, test_event = _records(event)
    if test_event:
        logger.info(json.dumps({"skipped": "s3:TestEvent"}))
        summary["skipped"].append({"reason": "s3:TestEvent"})
        return summary
    retryable = []
    for record in records:
        s3 = record.get("s3", {})
        bucket = s3.get("bucket", {}).get("name", "")
        obj = s3.get("object", {})
        key = unquote_plus(obj.get("key", ""))
        reason = skip_reason(settings, record, bucket, key)
        if reason:
            logger.info(json.dumps({"skipped": f"s3://{bucket}/{key}", "reason": reason}))
            summary["skipped"].append({"bucket": bucket, "key": key, "reason": reason})
            continue
        client = client or default_client()
        try:
            summary["invoked"].append(invoke(client, settings, bucket, key, obj.get("eTag", ""),
                                             obj.get("versionId")))
        except Exception as exc:  # noqa: BLE001 - one bad record must not hide the others
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            failure = {"bucket": bucket, "key": key, "error": code, "message": str(exc)}
            summary["failed"].append(failure)
            logger.error(json.dumps(failure))
            if code not in PERMANENT_ERRORS:
                retryable.append(failure)
    if retryable:
        raise RuntimeError(f"{len(retryable)} invocation(s) failed and will be retried: "
                           + "; ".join(f"s3://{f['bucket']}/{f['key']}: {f['error']}" for f in retryable))
    return summary


def invoke(client, settings: Settings, bucket: str, key: str, etag: str, version_id: str | None) -> dict:
    request = {
        "EndpointName": settings.endpoint_name,
        "InputLocation": f"s3://{bucket}/{key}",
        "ContentType": content_type_for(key),
        "Accept": settings.accept,
        "InferenceId": inference_id(bucket, key, etag, version_id),
        "InvocationTimeoutSeconds": settings.invocation_timeout,
    }
    if settings.custom_attributes:
        request["CustomAttributes"] = settings.custom_attributes
    if settings.request_ttl:
        request["RequestTTLSeconds"] = settings.request_ttl
    response = client.invoke_endpoint_async(**request)
    invoked = {"bucket": bucket, "key": key, "inferenceId": response.get("InferenceId", request["InferenceId"]),
               "outputLocation": response.get("OutputLocation"),
               "failureLocation": response.get("FailureLocation")}
    logger.info(json.dumps({"invoked": f"s3://{bucket}/{key}", **invoked}))
    return invoked


def lambda_handler(event, context):  # noqa: ARG001 - the Lambda entry point
    return handle(event)
