"""The worker's pieces that need no model: event parsing, ids, attributes, the HTTP client's error mapping."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from diarkit.worker import s3events
from diarkit.errors import OptionsError
from diarkit.worker.notifications import failure_message, success_message
from diarkit.request import RequestOptions
from diarkit.worker.processors import HttpProcessor, RemoteError, TransientError
from diarkit.result import SCHEMA_VERSION


def s3_record(key: str, event: str = "ObjectCreated:Put", etag: str = "0123abcd") -> dict:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": event,
            "s3": {"bucket": {"name": "media"}, "object": {"key": key, "size": 3, "eTag": etag}}}


def test_events_from_sqs_sns_and_eventbridge_give_decoded_keys():
    direct = s3events.parse_message(json.dumps({"Records": [s3_record("input/my+episode%2B1.wav")]}))
    assert direct.objects == [s3events.S3Object("media", "input/my episode+1.wav", "0123abcd", None, 3)]
    through_sns = s3events.parse_message(json.dumps({"Type": "Notification",
                                                     "Message": json.dumps({"Records": [s3_record("a%20b.mp3")]})}))
    assert through_sns.objects[0].key == "a b.mp3"
    bridge = s3events.parse_message({"source": "aws.s3", "detail-type": "Object Created",
                                     "detail": {"bucket": {"name": "media"}, "object": {"key": "in/a b.wav", "etag": "e"}}})
    assert bridge.objects[0].key == "in/a b.wav"
    assert s3events.parse_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})).test_event
    removed = s3events.parse_message({"Records": [s3_record("x.wav", "ObjectRemoved:Delete")]})
    assert removed.objects == [] and removed.ignored == ["ObjectRemoved:Delete"]
    numeric_key = s3_record("x.wav")
    numeric_key["s3"]["object"]["key"] = 5
    for garbage in ("[]", "[null]", "{}", '{"hello": 1}', '{"Records": ["x"]}', '{"Records": [null]}',
                    json.dumps({"Records": [numeric_key]}), json.dumps({"Records": [dict(s3_record("x"), s3=[])]})):
        with pytest.raises(ValueError):
            s3events.parse_message(garbage)


def test_inference_ids_are_stable_per_object_revision():
    one = s3events.inference_id("media", "input/a.wav", '"etag1"')
    assert one == s3events.inference_id("media", "input/a.wav", "etag1")  # quotes or not
    assert one != s3events.inference_id("media", "input/a.wav", "etag2")
    assert one != s3events.inference_id("media", "input/b.wav", "etag1")
    assert s3events.inference_id("media", "k", "e", "v1") != s3events.inference_id("media", "k", "e", "v2")


def test_custom_attributes_follow_the_server_rules():
    assert RequestOptions.from_flags(num_speakers=2, language="en").to_custom_attributes() == "num_speakers=2;language=en"
    assert (RequestOptions.from_flags(num_speakers=3, custom_attributes="num_speakers=2;format=srt").to_custom_attributes()
            == "num_speakers=3;format=srt")
    for bad in ("colour=blue", "num_speakers=two", "num_speakers"):
        with pytest.raises(OptionsError):
            RequestOptions.from_flags(custom_attributes=bad)


def test_notifications_have_sagemakers_shape():
    from datetime import datetime, timezone

    common = dict(inference_id="id-1", input_location="s3://m/input/a.wav", endpoint_name="w",
                  content_type="audio/wav", accept="application/json", received=datetime.now(timezone.utc))
    ok = success_message(output_location="s3://m/output/id-1.out", output_content_type="application/json", **common)
    assert ok["invocationStatus"] == "Completed" and ok["eventName"] == "InferenceResult"
    assert ok["requestParameters"]["inputLocation"] == "s3://m/input/a.wav"
    assert ok["responseParameters"]["outputLocation"] == "s3://m/output/id-1.out"
    failed = failure_message(failure_location="s3://m/failed/id-1-error.out", failure_reason="bad media", **common)
    assert failed["invocationStatus"] == "Failed" and failed["failureReason"] == "bad media"
    assert failed["eventTime"].endswith("Z")


class _Stub(BaseHTTPRequestHandler):
    """Answers /invocations as the test tells it; records what it received."""

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        self.server.received.append((self.headers, len(self.rfile.read(length))))  # case-insensitive
        status, body = self.server.answer
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.received, server.answer = [], (200, {})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_processor_streams_the_file_and_maps_errors(stub, tmp_path: Path):
    media = tmp_path / "take 1.flac"
    media.write_bytes(b"x" * 100_000)
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    processor = HttpProcessor(url)
    stub.answer = (200, {"version": SCHEMA_VERSION, "uri": "audio", "duration": 1.0, "language": "en",
                         "speakers": [{"label": "SPEAKER_00", "speaking_time": 0.5, "words": 0}]})
    result = processor(media, uri="take 1", content_type="audio/flac", options=RequestOptions.from_custom_attributes("num_speakers=2;format=vtt"))
    assert result.uri == "take 1" and result.num_speakers == 1
    headers, size = stub.received[-1]
    assert size == 100_000 and headers["Content-Type"] == "audio/flac" and headers["Accept"] == "application/json"
    # the worker renders formats itself: format is not forwarded
    assert headers["X-Amzn-SageMaker-Custom-Attributes"] == "num_speakers=2"

    stub.answer = (415, {"error": "unsupported_media", "detail": "not audio"})
    with pytest.raises(RemoteError) as failed:
        processor(media, uri="t", content_type="audio/flac", options=RequestOptions())
    assert (failed.value.kind, failed.value.status, str(failed.value)) == ("unsupported_media", 415, "not audio")
    stub.answer = (503, {"error": "loading", "detail": "still loading"})
    with pytest.raises(TransientError):
        processor(media, uri="t", content_type="audio/flac", options=RequestOptions())
    stub.answer = (200, {"not": "diarkit"})
    with pytest.raises(RemoteError):
        processor(media, uri="t", content_type="audio/flac", options=RequestOptions())
    with pytest.raises(TransientError):  # nobody listening
        HttpProcessor("http://127.0.0.1:9")(media, uri="t", content_type="audio/flac", options=RequestOptions())
