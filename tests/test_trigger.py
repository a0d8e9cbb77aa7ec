"""The S3 trigger Lambda's handler, called directly (moto cannot run Lambdas without Docker).

The events are real: moto's S3 puts them (and its s3:TestEvent) into an SQS queue, the
test takes them from there. Invocations go to moto's sagemaker-runtime, through a small
loopback proxy that can answer with throttling and validation errors first.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote_plus, urlsplit

import boto3
import pytest

REPO = Path(__file__).resolve().parent.parent

import deploy_async  # noqa: E402
from lambda_trigger import handler  # noqa: E402

from diarkit.worker import s3events  # noqa: E402

BUCKET = "dk-trigger-media"


class FaultProxy(ThreadingHTTPServer):
    """Forwards to moto; answers the next InvokeEndpointAsync calls with queued faults first."""

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlsplit(upstream)
        self.faults: list[tuple[int, str]] = []
        self.invocations = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        proxy: FaultProxy = self.server  # type: ignore[assignment]
        if "/async-invocations" in self.path:
            proxy.invocations += 1
            if proxy.faults:
                status, code = proxy.faults.pop(0)
                payload = json.dumps({"message": f"injected {code}"}).encode()
                self.send_response(status)
                self.send_header("x-amzn-ErrorType", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
        upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
        upstream.request("POST", self.path, body, headers=dict(self.headers))
        response = upstream.getresponse()
        payload = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def proxy(moto_endpoint):
    server = FaultProxy(moto_endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def settings() -> handler.Settings:
    """The environment deploy_async.py gives the Lambda, read the way the Lambda reads it."""
    config = deploy_async.load_settings(None, {"name": "dk-trigger", "bucket": BUCKET,
                                               "custom_attributes": "num_speakers=2;language=en"})
    ctx = deploy_async.Context(config, deploy_async.Api("us-east-1", None, dry_run=True), "123456789012")
    return handler.Settings.from_env(deploy_async.trigger_environment(ctx))


@pytest.fixture(scope="module")
def events(moto_endpoint) -> dict[str, dict]:
    """Real S3 notifications, as moto's S3 sends them: test event, a key with a space, an output object."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    queue = sqs.create_queue(QueueName="dk-trigger-tap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=BUCKET, Key="input/my episode 1.wav", Body=b"RIFF....")
    s3.put_object(Bucket=BUCKET, Key="output/4f1c.out", Body=b"{}")
    bodies = []
    while len(bodies) < 3:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        bodies += [json.loads(m["Body"]) for m in messages]
    test = next(b for b in bodies if b.get("Event") == "s3:TestEvent")
    created = [b for b in bodies if "Records" in b]
    by_prefix = {unquote_plus(b["Records"][0]["s3"]["object"]["key"]).split("/")[0]: b for b in created}
    return {"test": test, "input": by_prefix["input"], "output": by_prefix["output"]}


def recording_client(endpoint: str):
    client = handler.make_client(endpoint_url=endpoint)
    calls: list[dict] = []
    client.meta.events.register("provide-client-params.sagemaker-runtime.InvokeEndpointAsync",
                                lambda params, **kw: calls.append(dict(params)))
    return client, calls


def test_created_object_invokes_the_endpoint(moto_endpoint, settings, events):
    client, calls = recording_client(moto_endpoint)
    record = events["input"]["Records"][0]
    raw_key = record["s3"]["object"]["key"]
    assert " " not in raw_key and "my+episode+1.wav" in raw_key  # S3 URL-encodes keys
    summary = handler.handle(events["input"], client=client, settings=settings)
    (call,) = calls
    etag = record["s3"]["object"]["eTag"]
    expected_id = s3events.inference_id(BUCKET, "input/my episode 1.wav", etag)
    assert call == {"EndpointName": "dk-trigger", "InputLocation": f"s3://{BUCKET}/input/my episode 1.wav",
                    "ContentType": "audio/wav", "Accept": "application/json", "InferenceId": expected_id,
                    "InvocationTimeoutSeconds": 3600, "CustomAttributes": "num_speakers=2;language=en"}
    assert summary["invoked"][0]["inferenceId"] == expected_id and summary["invoked"][0]["outputLocation"]
    # a redelivered event carries the same id: recognizable downstream
    handler.handle(events["input"], client=client, settings=settings)
    assert calls[1]["InferenceId"] == expected_id


def test_test_events_and_own_results_are_skipped(moto_endpoint, settings, events):
    client, calls = recording_client(moto_endpoint)
    summary = handler.handle(events["test"], client=client, settings=settings)
    assert summary["skipped"] == [{"reason": "s3:TestEvent"}]
    summary = handler.handle(events["output"], client=client, settings=settings)
    assert summary["skipped"][0]["reason"] == "under the output or failure prefix"
    outside = json.loads(json.dumps(events["input"]))
    outside["Records"][0]["s3"]["object"]["key"] = "elsewhere/my+episode+1.wav"
    assert handler.handle(outside, client=client, settings=settings)["skipped"][0]["reason"] == "outside the input prefix"
    assert calls == []


def test_throttling_is_retried(proxy, settings, events):
    client, calls = recording_client(proxy.url)
    proxy.faults[:] = [(400, "ThrottlingException")]
    before = proxy.invocations
    summary = handler.handle(events["input"], client=client, settings=settings)
    assert proxy.invocations - before == 2 and len(summary["invoked"]) == 1 and summary["failed"] == []


def test_validation_errors_are_reported_not_retried(proxy, settings, events):
    client, _ = recording_client(proxy.url)
    proxy.faults[:] = [(400, "ValidationError")]
    before = proxy.invocations
    summary = handler.handle(events["input"], client=client, settings=settings)
    assert proxy.invocations - before == 1
    assert summary["invoked"] == [] and summary["failed"][0]["error"] == "ValidationError"
    assert summary["failed"][0]["key"] == "input/my episode 1.wav"


def test_other_errors_fail_the_invocation_so_lambda_retries(proxy, settings, events):
    client, _ = recording_client(proxy.url)
    proxy.faults[:] = [(400, "InternalDependencyException")]
    with pytest.raises(RuntimeError, match="will be retried"):
        handler.handle(events["input"], client=client, settings=settings)


def test_handler_and_worker_derive_the_same_names():
    """The Lambda zip holds handler.py alone, so it keeps copies: they must not drift."""
    assert handler.INFERENCE_NAMESPACE == s3events.INFERENCE_NAMESPACE
    assert handler.CONTENT_TYPES == s3events.CONTENT_TYPES
    for key in ("input/a b.WAV", "x/y.mkv", "noext", ".hidden", "dir.v2/file", "a.tar.gz", "film.MOV"):
        assert handler.content_type_for(key) == s3events.content_type_for(key)
        assert handler.inference_id("b", key, '"abc"') == s3events.inference_id("b", key, "abc")
    assert handler.inference_id("b", "k", "e", "v1") != handler.inference_id("b", "k", "e", "v2")
