"""Hostile and careless input against the real `diarkit serve` and `diarkit transcribe` processes.

Playlists that name server files, media longer than the duration limit, stalled uploads,
clients that leave, no file descriptors left, unwritable output folders, file modes.
Media is made with ffmpeg here; clips are short so each inference takes seconds.
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, ffmpeg
from test_worker_e2e import Process, free_port

HOST = "127.0.0.1"
MAX_DURATION = 60  # seconds, for the server under test (DIARKIT_MAX_DURATION)


@pytest.fixture(scope="module")
def files(tmp_path_factory, sample_wav) -> dict[str, Path]:
    """A 'server file' (speech), playlists naming it, a long 8 kHz 8-bit file, and media for the rest."""
    root = tmp_path_factory.mktemp("untrusted")
    secret = root / "secret.mp3"
    ffmpeg("-ss", "6", "-t", "5", "-i", str(sample_wav), str(secret))
    hls = root / "playlist.wav"
    hls.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5.0,\n{secret}\n#EXT-X-ENDLIST\n")
    concat = root / "list.wav"
    concat.write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    long = root / "long-8k-u8.wav"  # 90 s: over the test limit, 720 kB
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=90:c=pink:r=8000:a=0.1", "-c:a", "pcm_u8", str(long))
    looped = root / "looped.wav"  # 55 s of speech: an inference that takes a while
    ffmpeg("-stream_loop", "1", "-i", str(sample_wav), "-t", "55", str(looped))
    return {"secret": secret, "hls": hls, "concat": concat, "long": long, "looped": looped}


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    spool = tmp_path_factory.mktemp("spool")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "DIARKIT_"))}
    env.update(DIARKIT_MAX_DURATION=str(MAX_DURATION), PYTHONUNBUFFERED="1")
    proc = Process(["serve", "--model-dir", str(model_dir), "--host", HOST, "--port", str(port), "--device", "cpu",
                    "--tmp-dir", str(spool), "--idle-timeout", "2"], env, "serve")
    from diarkit.worker.processors import HttpProcessor

    HttpProcessor(f"http://{HOST}:{port}").wait_ready(timeout=300, interval=0.3)
    proc.port, proc.spool = port, spool
    yield proc
    proc.stop()


def post(port: int, body: bytes, content_type: str = "audio/wav", timeout: float = 300) -> tuple[int, dict | bytes]:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data


def raw_request(port: int, body_prefix: bytes, length: int) -> socket.socket:
    """A POST whose Content-Length promises more than is sent."""
    sock = socket.create_connection((HOST, port), timeout=60)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                 b"Content-Length: %d\r\n\r\n" % length + body_prefix)
    return sock


def read_reply(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"content-length: (\d+)", head, re.I)
        if match and len(body) >= int(match.group(1)):
            break
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


# --------------------------------------------------------------------------- server


def test_playlists_naming_server_files_are_refused(server, files):
    for name in ("hls", "concat"):
        status, body = post(server.port, files[name].read_bytes())
        assert status == 415 and body["error"] == "unsupported_media", body
        assert "playlist, list or manifest" in body["detail"] and str(files["secret"]) not in body["detail"]
    assert server.count("inference started") == 0  # refused at the probe, before any worker
    # the file the playlists name is real speech the server would have transcribed
    status, body = post(server.port, files["secret"].read_bytes(), "audio/mpeg")
    assert status == 200 and body["segments"], body


def test_media_longer_than_the_limit_is_refused_before_decoding(server, files):
    started = time.monotonic()
    status, body = post(server.port, files["long"].read_bytes())
    assert status == 413 and body["error"] == "media_too_long", body
    assert "0:01:30" in body["detail"] and "DIARKIT_MAX_DURATION" in body["detail"]
    assert time.monotonic() - started < 10


def test_stalled_upload_is_answered_408_and_cleaned_up(server):
    sock = raw_request(server.port, b"RIFF" + b"\0" * 1000, 100_000)
    try:
        started = time.monotonic()
        status, body = read_reply(sock)
    finally:
        sock.close()
    assert status == 408 and json.loads(body)["error"] == "request_timeout"
    assert 1.5 < time.monotonic() - started < 20  # --idle-timeout 2, not the 3600 s request limit
    assert list(server.spool.iterdir()) == []


def test_out_of_file_descriptors_leaks_no_path_and_leaves_no_spool(server):
    pid = server.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    open_now = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_now + 1, hard))  # the connection takes the last one
    try:
        status, body = post(server.port, b"not media at all", timeout=60)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert status == 500 and body["error"] == "internal_error", body
    assert str(server.spool) not in json.dumps(body) and "/" not in body["detail"]
    # the next request removes what could not be removed without a file descriptor
    status, body = post(server.port, b"not media at all")
    assert status == 415
    assert list(server.spool.iterdir()) == []


def test_client_that_leaves_gives_up_its_inference(server, files):
    before = server.count("inference started")
    sock = raw_request(server.port, files["looped"].read_bytes(), files["looped"].stat().st_size)
    server.wait_for("inference started", count=before + 1, timeout=120)
    sock.close()  # the client is gone
    server.wait_for("the client went away: its inference is given up", timeout=60)
    stopped = server.wait_for(r"inference stopped at stage (\w+)", timeout=120)[-1]
    assert not stopped.endswith("assign")  # stopped early, not run to its end
    # the worker is free again: a short file is answered
    status, body = post(server.port, files["secret"].read_bytes(), "audio/mpeg")
    assert status == 200 and body["segments"]
    assert server.proc.poll() is None


# --------------------------------------------------------------------------- CLI


def transcribe(model_dir: Path, out: Path, *inputs: Path, umask: int = 0o022) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diarkit", "transcribe", *map(str, inputs), "-o", str(out),
                           "--model-dir", str(model_dir), "--quiet", "--formats", "json,txt"],
                          capture_output=True, text=True, cwd=REPO, timeout=600, preexec_fn=lambda: os.umask(umask))


def test_cli_refuses_playlists_and_writes_files_with_the_usual_mode(model_dir, files, tmp_path):
    out = tmp_path / "out"
    proc = transcribe(model_dir, out, files["hls"], files["secret"])
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"playlist\.wav: is not accepted media: its format \(hls\)", proc.stderr), proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["secret.json", "secret.txt"]
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644  # umask 022, not mkstemp's 0600


def test_cli_checks_the_output_folder_before_any_work(model_dir, files, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    started = time.monotonic()
    proc = transcribe(model_dir, not_a_folder / "out", files["secret"])
    assert proc.returncode == 2 and "cannot write results here" in proc.stderr, proc.stderr
    assert str(not_a_folder / "out") in proc.stderr and "writable output folder" in proc.stderr
    assert time.monotonic() - started < 30  # no model was loaded, nothing transcribed


def test_cli_read_only_output_folder(model_dir, files, tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        proc = transcribe(model_dir, mount, files["secret"])
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert proc.returncode == 2 and "cannot write results here: Read-only file system" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- decoding memory


def test_decoding_needs_no_more_memory_than_the_audio(tmp_path):
    """30 min of 8 kHz 8-bit audio (14 MB) is 115 MB of float32; the decoder's peak stays near that."""
    source = tmp_path / "half-hour.wav"
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=1800:c=pink:r=8000:a=0.1", "-c:a", "pcm_u8", str(source))
    script = (
        "import resource, sys\n"
        "from diarkit import audio\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "samples = audio.decode(sys.argv[1])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print(samples.nbytes, after - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(source)], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert proc.returncode == 0, proc.stderr
    nbytes, growth = map(int, proc.stdout.split())
    assert nbytes == 1800 * 16000 * 4
    assert growth < 1.1 * nbytes, f"peak grew {growth / 2**20:.0f} MiB for {nbytes / 2**20:.0f} MiB of audio"
