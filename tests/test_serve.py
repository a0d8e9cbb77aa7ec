"""``diarkit serve`` as a real process on loopback: real models, real media, real HTTP.

One server serves the module (its tests run in file order); SIGTERM gets a short-lived
server of its own.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, ffmpeg

HOST = "127.0.0.1"  # never anything else
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
CUE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    seconds: float

    def json(self):
        return json.loads(self.body)


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    spool: Path
    log: Path
    ping_statuses: list[int] = field(default_factory=list)

    def request(self, method: str, path: str, body=None, headers: dict | None = None, timeout: float = 600) -> Reply:
        started = time.perf_counter()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return Reply(response.status, response.getheader("content-type") or "", data, time.perf_counter() - started)

    def post(self, body, content_type: str = "audio/wav", **headers) -> Reply:
        return self.request("POST", "/invocations", body, {"Content-Type": content_type, **headers})

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                status = self.request("GET", "/ping", timeout=5).status
            except OSError:  # not listening yet
                time.sleep(0.2)
                continue
            self.ping_statuses.append(status)
            if status == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"/ping never answered 200:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(model_dir: Path, workdir: Path, *extra: str) -> ServerProcess:
    spool = workdir / "spool"
    spool.mkdir(parents=True)
    log = workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "DIARKIT_"))}
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "diarkit", "serve", "--model-dir", str(model_dir), "--host", HOST,
             "--port", str(port), "--tmp-dir", str(spool), "--device", "cpu", *extra],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env,
        )
    return ServerProcess(proc, port, spool, log)


def vtt_cues(text: str) -> list[tuple[float, float, str]]:
    """Parse WebVTT strictly enough to catch a broken file: header, cue timings, voice spans."""
    blocks = text.strip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        timing, *payload = block.split("\n")
        match = CUE.match(timing)
        assert match, f"bad cue timing {timing!r}"
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        start, end = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert start <= end and payload and re.match(r"^<v SPEAKER_\d+>\S", payload[0])
        cues.append((start, end, payload[0]))
    return cues


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    proc = start_server(model_dir, tmp_path_factory.mktemp("serve"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory, sample_wav) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("serve-media")
    files = {"sample": sample_wav, "clip": out / "clip.wav", "mp3": out / "clip.mp3",
             "three-minutes": out / "three-minutes.wav"}
    ffmpeg("-i", str(sample_wav), "-t", "8", str(files["clip"]))
    ffmpeg("-i", str(sample_wav), "-t", "8", "-b:a", "64k", str(files["mp3"]))
    # the 3-minute recording: the sample six times
    ffmpeg("-stream_loop", "5", "-i", str(sample_wav), "-c", "copy", str(files["three-minutes"]))
    return files


def test_ping_answers_503_or_200_only(server):
    assert server.ping_statuses[-1] == 200
    assert set(server.ping_statuses) <= {503, 200}


def test_sample_as_wav_gives_json_with_two_speakers(server, media):
    reply = server.post(media["sample"].read_bytes())
    assert reply.status == 200, reply.body
    assert reply.content_type == "application/json"
    result = reply.json()
    assert result["num_speakers"] == 2 and len(result["speakers"]) == 2
    assert result["duration"] == pytest.approx(30.0, abs=0.1)
    assert sum(len(s["words"]) for s in result["segments"]) > 50
    assert list(server.spool.iterdir()) == []


def test_accept_vtt_gives_webvtt(server, media):
    reply = server.post(media["sample"].read_bytes(), Accept="text/vtt")
    assert reply.status == 200, reply.body
    assert reply.content_type.startswith("text/vtt")
    cues = vtt_cues(reply.body.decode("utf-8"))
    assert len(cues) >= 5  # subtitle events of up to two lines (the rules profile), 8 or so on the sample
    assert {text.split(">")[0] for _, _, text in cues} == {"<v SPEAKER_00", "<v SPEAKER_01"}


def test_ping_stays_fast_during_a_three_minute_recording(server, media):
    replies: list[Reply] = []
    worker = threading.Thread(target=lambda: replies.append(server.post(media["three-minutes"].read_bytes())))
    worker.start()
    time.sleep(1.0)  # upload done, inference under way
    pings = []
    for _ in range(20):
        pings.append(server.request("GET", "/ping", timeout=5))
        time.sleep(0.1)
    assert worker.is_alive(), "the long request ended before the pings: nothing was measured"
    worker.join(600)
    assert [p.status for p in pings] == [200] * 20
    assert max(p.seconds for p in pings) < 0.5, [round(p.seconds, 3) for p in pings]
    assert replies[0].status == 200, replies[0].body
    assert replies[0].json()["duration"] == pytest.approx(180.0, abs=0.5)


def test_300_mb_of_non_media_is_refused_without_holding_it_in_memory(server, media):
    block = os.urandom(1 << 20)
    size = 300 << 20
    baseline = server.rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample_rss():
        while not done.is_set():
            peak[0] = max(peak[0], server.rss_bytes())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    try:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=300)
        conn.putrequest("POST", "/invocations")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        for _ in range(size // len(block)):
            conn.send(block)
        response = conn.getresponse()
        status, body = response.status, response.read()
        conn.close()
    finally:
        done.set()
        sampler.join()
    assert status in (415, 400), body
    assert json.loads(body)["error"] == "unsupported_media"
    growth = peak[0] - baseline
    assert growth < 64 << 20, f"resident memory grew by {growth / (1 << 20):.1f} MB"
    assert list(server.spool.iterdir()) == []
    # and the next valid request succeeds
    reply = server.post(media["clip"].read_bytes())
    assert reply.status == 200, reply.body


def four_requests(media) -> list[tuple[bytes, str, dict, str]]:
    """(body, content type, headers, expected content type): one of each kind of request."""
    clip = media["clip"].read_bytes()
    envelope = json.dumps({"audio_base64": base64.b64encode(clip).decode(), "options": {"num_speakers": 2}})
    return [
        (media["sample"].read_bytes(), "audio/wav", {}, "application/json"),
        (clip, "audio/wav", {CUSTOM_ATTRIBUTES: "num_speakers=2;format=srt"}, "application/x-subrip"),
        (envelope.encode(), "application/json", {"Accept": "text/plain"}, "text/plain"),
        (media["mp3"].read_bytes(), "audio/mpeg", {"Accept": "text/x-rttm"}, "text/x-rttm"),
    ]


def send_concurrently(server: ServerProcess, requests) -> list[Reply | None]:
    replies: list[Reply | None] = [None] * len(requests)

    def send(index):
        body, content_type, headers, _ = requests[index]
        replies[index] = server.post(body, content_type, **headers)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    return replies


def comparable(reply: Reply):
    """The answer without the per-run timings (JSON) or as it is (text formats)."""
    if reply.content_type.startswith("application/json"):
        data = reply.json()
        data.pop("timings", None)
        return data
    return reply.body.decode()


def test_four_concurrent_valid_requests_all_succeed(server, media):
    requests = four_requests(media)
    replies = send_concurrently(server, requests)
    for reply, (_, _, _, expected_type) in zip(replies, requests):
        assert reply is not None and reply.status == 200, reply
        assert reply.content_type.split(";")[0] == expected_type
    assert "SPEAKER_00" in replies[1].body.decode() and "-->" in replies[1].body.decode()
    assert re.search(r"^SPEAKER_0\d: ", replies[2].body.decode(), re.M)
    assert replies[3].body.decode().startswith("SPEAKER audio 1 ")
    assert list(server.spool.iterdir()) == []


def test_two_workers_answer_four_concurrent_requests_as_one_worker_does(server, model_dir, tmp_path, media):
    """Several inference workers share nothing per request: the same answers as one worker."""
    requests = four_requests(media)
    expected = [comparable(r) for r in send_concurrently(server, requests)]
    two = start_server(model_dir, tmp_path, "--workers", "2")
    try:
        two.wait_ready()
        replies = send_concurrently(two, requests)
    finally:
        two.stop()
    assert all(r is not None and r.status == 200 for r in replies), replies
    assert [comparable(r) for r in replies] == expected
    log = two.log.read_text()
    assert "2 inference worker(s)" in log and "(1 CPU threads)" in log or os.cpu_count() == 1


BAD_REQUESTS = {
    "garbage bytes": (b"\x00\x01garbage" * 1000, "audio/wav", {}, 415, "unsupported_media"),
    "empty body": (b"", "audio/wav", {}, 400, "bad_request"),
    "bad custom attribute": (b"RIFF", "audio/wav", {CUSTOM_ATTRIBUTES: "num_speakers=two"}, 400, "bad_options"),
    "unknown custom attribute": (b"RIFF", "audio/wav", {CUSTOM_ATTRIBUTES: "speed=2"}, 400, "bad_options"),
    "custom attribute without value": (b"RIFF", "audio/wav", {CUSTOM_ATTRIBUTES: "num_speakers"}, 400,
                                       "bad_options"),
    "unsupported content type": (b"hello", "text/plain", {}, 415, "unsupported_media_type"),
    "unacceptable Accept": (b"RIFF", "audio/wav", {"Accept": "image/png"}, 406, "not_acceptable"),
    "broken JSON": (b"{audio", "application/json", {}, 400, "bad_request"),
    "bad base64": (b'{"audio_base64": "%%%"}', "application/json", {}, 400, "bad_request"),
    "bad JSON option": (b'{"audio_base64": "AAAA", "options": {"num_speakers": 0}}', "application/json", {}, 400,
                        "bad_options"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_a_json_4xx(server, name):
    body, content_type, headers, status, error = BAD_REQUESTS[name]
    reply = server.post(body, content_type, **headers)
    assert reply.status == status, reply.body
    assert reply.content_type == "application/json"
    document = reply.json()
    assert set(document) == {"error", "detail"} and document["error"] == error and document["detail"]
    assert "Traceback" not in document["detail"] and str(server.spool) not in document["detail"]


def test_still_serving_and_nothing_left_behind(server):
    assert server.request("GET", "/ping").status == 200
    assert server.proc.poll() is None
    assert list(server.spool.iterdir()) == []


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(model_dir, tmp_path, media):
    # a generous grace period: a loaded test machine may take longer than the default 25 s
    proc = start_server(model_dir, tmp_path, "--graceful-timeout", "300")
    try:
        proc.wait_ready()
        replies: list[Reply] = []
        worker = threading.Thread(target=lambda: replies.append(proc.post(media["clip"].read_bytes())))
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive(), "the request ended before SIGTERM: nothing was tested"
        proc.proc.send_signal(signal.SIGTERM)
        # new connections are refused while the request in flight is still being worked on
        refused_in_flight = False
        while worker.is_alive():
            try:
                proc.request("GET", "/ping", timeout=2)
            except OSError:
                refused_in_flight = worker.is_alive()
                break
            time.sleep(0.05)
        assert refused_in_flight, "no refusal seen while the request was in flight"
        worker.join(300)
        assert replies and replies[0].status == 200, replies
        assert replies[0].json()["duration"] == pytest.approx(8.0, abs=0.1)
        assert proc.proc.wait(60) == 0
        assert "SIGTERM" in proc.log.read_text()
        assert list(proc.spool.iterdir()) == []
    finally:
        proc.stop()
