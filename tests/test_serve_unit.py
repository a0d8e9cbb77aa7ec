"""The server's own behaviour with a stand-in pipeline: loading, time limit, size limits, clean-up.

uvicorn runs in a thread of the test process on a free loopback port; the stand-in
returns an empty result after a chosen delay, so these tests take seconds, not minutes.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
import wave
from pathlib import Path

import pytest
import uvicorn

from diarkit.result import TranscriptResult
from diarkit.serving.server import DiarkitServer, ServeConfig


class StubPipeline:
    def __init__(self):
        self.delay = 0.0
        self.calls: list[dict] = []
        self.finished = threading.Event()

    def transcribe(self, media, *, uri=None, options=None, progress=None):
        # what the request asked for, flattened as the pipeline reads it
        self.calls.append({"uri": uri, **options.speaker_hints, "language": options.language})
        time.sleep(self.delay)
        self.finished.set()
        return TranscriptResult(uri=uri or "audio", duration=1.0, language="en")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    """A DiarkitServer on loopback in a thread."""

    def __init__(self, tmp_path: Path, load, graceful: float | None = None, **config):
        self.spool = tmp_path / "spool"
        self.spool.mkdir()
        self.port = free_port()
        self.app = DiarkitServer(ServeConfig(model_dir=tmp_path, port=self.port, tmp_dir=str(self.spool), **config),
                                 load=load)
        self.server = uvicorn.Server(uvicorn.Config(self.app.app, host="127.0.0.1", port=self.port,
                                                   log_level="warning", lifespan="on",
                                                   timeout_graceful_shutdown=graceful))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.getheader("content-type") or "", response.read()
        finally:
            conn.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while self.request("GET", "/ping")[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def wav_bytes(tmp_path_factory) -> bytes:
    """One second of silence as a real WAV file (ffprobe has to accept it)."""
    path = tmp_path_factory.mktemp("wav") / "silence.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000)
    return path.read_bytes()


@pytest.fixture
def stub():
    return StubPipeline()


@pytest.fixture
def running(tmp_path, stub, request):
    config = getattr(request, "param", {})
    server = Running(tmp_path, load=lambda: stub, **config)
    server.wait_ready()
    yield server
    server.stop()


def assert_json_error(status, content_type, body, expected_status, expected_error=None):
    assert status == expected_status, body
    assert content_type.startswith("application/json")
    document = json.loads(body)
    assert set(document) == {"error", "detail"} and document["detail"]
    if expected_error:
        assert document["error"] == expected_error


def test_ping_is_503_while_loading_then_200(tmp_path, stub, wav_bytes):
    loaded = threading.Event()

    def slow_load():
        loaded.wait(10)
        return stub

    server = Running(tmp_path, load=slow_load)
    try:
        assert_json_error(*server.request("GET", "/ping"), 503, "loading")
        assert_json_error(*server.request("POST", "/invocations", wav_bytes, {"Content-Type": "audio/wav"}),
                          503, "loading")
        loaded.set()
        server.wait_ready()
        status, _, body = server.request("GET", "/ping")
        assert status == 200 and body == b""
    finally:
        loaded.set()
        server.stop()


def test_load_failure_is_reported(tmp_path):
    failures = []

    def broken_load():
        raise RuntimeError("no GPU memory left")

    server = Running(tmp_path, load=broken_load)
    server.app.workers.on_failure = failures.append
    try:
        deadline = time.monotonic() + 10
        while server.app.workers.error is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert_json_error(*server.request("GET", "/ping"), 500, "model_load_failed")
    finally:
        server.stop()


@pytest.mark.parametrize("running", [{"timeout": 1.0}], indirect=True)
def test_time_limit_answers_504_and_frees_the_worker(running, stub, wav_bytes):
    stub.delay = 3.0
    started = time.monotonic()
    assert_json_error(*running.request("POST", "/invocations", wav_bytes, {"Content-Type": "audio/wav"}),
                      504, "timeout")
    assert time.monotonic() - started < 2.5
    assert list(running.spool.iterdir()) == []
    # the running inference cannot be interrupted: it keeps its worker until it ends
    assert not stub.finished.is_set()
    assert stub.finished.wait(10)
    stub.delay = 0.0
    status, content_type, body = running.request("POST", "/invocations", wav_bytes, {"Content-Type": "audio/wav"})
    assert status == 200 and json.loads(body)["duration"] == 1.0
    assert len(stub.calls) == 2


def test_request_cut_by_the_end_of_the_grace_period_gets_json_503(tmp_path, stub, wav_bytes):
    server = Running(tmp_path, load=lambda: stub, graceful=0.5)
    server.wait_ready()
    stub.delay = 3.0
    replies = []
    worker = threading.Thread(target=lambda: replies.append(
        server.request("POST", "/invocations", wav_bytes, {"Content-Type": "audio/wav"})))
    worker.start()
    time.sleep(0.5)
    server.stop()  # what SIGTERM does
    worker.join(10)
    assert_json_error(*replies[0], 503, "shutting_down")
    assert server.app.workers.running == 1  # the inference itself runs on; `serve` then exits at once
    assert list(server.spool.iterdir()) == []


def test_workers_each_own_a_pipeline_and_extra_requests_wait(tmp_path, wav_bytes):
    stubs = []

    def load():
        stubs.append(StubPipeline())
        stubs[-1].delay = 1.0
        return stubs[-1]

    server = Running(tmp_path, load=load, workers=2)
    try:
        server.wait_ready()
        replies = []
        threads = [threading.Thread(target=lambda: replies.append(
            server.request("POST", "/invocations", wav_bytes, {"Content-Type": "audio/wav"})[0])) for _ in range(3)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert replies == [200, 200, 200]
    assert len(stubs) == 2 and sorted(len(s.calls) for s in stubs) == [1, 2]
    assert 2.0 <= elapsed < 2.9  # two at once, the third waited for a free worker


@pytest.mark.parametrize("running", [{"max_body_bytes": 1 << 20, "max_json_bytes": 1 << 16}], indirect=True)
def test_body_too_large_is_413(running, stub):
    # The client stops sending where the server answers: a server closing a connection with
    # unread bytes resets it, and the client could lose the answer (TCP, not diarkit).
    def post_partial(headers: dict, chunks: list[bytes] = ()):
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
        try:
            conn.putrequest("POST", "/invocations")
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            for chunk in chunks:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            response = conn.getresponse()
            return response.status, response.getheader("content-type") or "", response.read()
        finally:
            conn.close()

    # declared with Content-Length: refused from the headers, before any body byte
    assert_json_error(*post_partial({"Content-Type": "audio/wav", "Content-Length": str(2 << 20)}),
                      413, "payload_too_large")
    assert_json_error(*post_partial({"Content-Type": "application/json", "Content-Length": str(1 << 17)}),
                      413, "payload_too_large")
    # chunked, no length: refused once the limit is crossed
    assert_json_error(*post_partial({"Content-Type": "audio/wav", "Transfer-Encoding": "chunked"},
                                    [b"\0" * (1 << 18)] * 4 + [b"\0"]),
                      413, "payload_too_large")
    assert stub.calls == [] and list(running.spool.iterdir()) == []


def test_json_envelope_options_and_format(running, stub, wav_bytes):
    envelope = json.dumps({"audio_base64": base64.b64encode(wav_bytes).decode(),
                           "options": {"num_speakers": 2, "format": "rttm"}}).encode()
    status, content_type, body = running.request(
        "POST", "/invocations", envelope,
        {"Content-Type": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "language=en;num_speakers=3"})
    assert status == 200 and content_type.startswith("text/x-rttm")
    assert stub.calls[-1] == {"uri": "audio", "num_speakers": 3, "min_speakers": None, "max_speakers": None,
                              "language": "en"}
    assert list(running.spool.iterdir()) == []


def test_unknown_routes_answer_json(running):
    assert_json_error(*running.request("GET", "/nope"), 404, "not_found")
    assert_json_error(*running.request("GET", "/invocations"), 405, "method_not_allowed")
