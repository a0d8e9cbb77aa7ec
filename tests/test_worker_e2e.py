"""`diarkit worker` end to end: real subprocesses, the real model and sample, a moto server on loopback.

Queue mode: S3 (moto) -> SQS -> worker -> S3 output + SNS -> SQS notifications.
Watch mode: a folder. The workers are killed (SIGKILL) and stopped (SIGTERM) mid-file.
Model loads are the expensive part, so workers are shared: W1 (queue, in process) runs
the success/failure/duplicate cases and is killed mid-file; W2 (queue, posting to a
`diarkit serve`) finishes that file and is stopped with SIGTERM; W3 (folder, in process)
runs success/failure and is killed; W4 (folder, through the server) recovers and is stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote_plus

import boto3
import pytest

from conftest import REPO, ffmpeg
from diarkit.worker.s3events import inference_id

ANSWER_WITHIN = 120  # seconds from upload to notification (the acceptance bound)


class Process:
    """A diarkit subprocess whose log lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str], name: str):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-m", "diarkit", *args], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.closed = False  # stderr reached its end: the process is gone
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip())
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = ANSWER_WITHIN, count: int = 1) -> list[str]:
        """The first ``count`` log lines matching ``pattern`` (regex), waiting for them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if re.search(pattern, line)]
                if len(found) >= count:
                    return found
                if self.closed:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 1.0))
        raise AssertionError(f"{self.name}: no {count} line(s) matching {pattern!r}; log:\n" + "\n".join(self.lines[-40:]))

    def count(self, pattern: str) -> int:
        with self._changed:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no chance to clean up
        self.proc.wait(30)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def env(moto_endpoint) -> dict[str, str]:
    environ = dict(os.environ, AWS_ENDPOINT_URL=moto_endpoint, PYTHONUNBUFFERED="1")
    environ.pop("DIARKIT_MODEL_DIR", None)
    return environ


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_wav) -> Path:
    """12 s of the sample: enough to be mid-file when killed, short to run again."""
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    ffmpeg("-ss", "5", "-t", "12", "-i", str(sample_wav), str(path))
    return path


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("broken") / "broken.mp3"
    path.write_bytes(os.urandom(20_000))
    return path


@pytest.fixture(scope="module")
def server(env, model_dir):
    """`diarkit serve` on loopback (W2 and W4 post to it)."""
    port = free_port()
    proc = Process(["serve", "--host", "127.0.0.1", "--port", str(port), "--model-dir", str(model_dir),
                    "--device", "cpu", "--graceful-timeout", "1"], env, "serve")
    from diarkit.worker.processors import HttpProcessor

    HttpProcessor(f"http://127.0.0.1:{port}").wait_ready(timeout=180, interval=0.5)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


# --------------------------------------------------------------------------- queue mode


@pytest.fixture(scope="module")
def stack(moto_endpoint):
    """Bucket -> jobs queue (input/ only); success and error topics -> a notes queue."""
    tag = uuid.uuid4().hex[:8]
    aws = {name: boto3.client(name, endpoint_url=moto_endpoint) for name in ("s3", "sqs", "sns")}
    s3, sqs, sns = aws["s3"], aws["sqs"], aws["sns"]
    bucket = f"dk-e2e-{tag}"
    s3.create_bucket(Bucket=bucket)

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=f"{name}-{tag}")["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    jobs, jobs_arn = queue("dk-jobs")
    notes, notes_arn = queue("dk-notes")
    topics = {}
    for kind in ("success", "error"):
        topics[kind] = sns.create_topic(Name=f"dk-{kind}-{tag}")["TopicArn"]
        sns.subscribe(TopicArn=topics[kind], Protocol="sqs", Endpoint=notes_arn)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": jobs_arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "input/"}]}}}]})
    return SimpleNamespace(s3=s3, sqs=sqs, bucket=bucket, jobs=jobs, notes=notes, topics=topics, received=[])


def queue_args(stack, visibility: int) -> list[str]:
    return ["worker", "--queue-url", stack.jobs, "--output", f"s3://{stack.bucket}/output/",
            "--failure", f"s3://{stack.bucket}/failed/", "--success-topic", stack.topics["success"],
            "--error-topic", stack.topics["error"], "--visibility-timeout", str(visibility),
            "--heartbeat", str(max(1, visibility // 4)), "--wait-time", "1", "--endpoint-name", "dk-e2e"]


@pytest.fixture(scope="module")
def w1(stack, env, model_dir):
    worker = Process(queue_args(stack, visibility=6) + ["--model-dir", str(model_dir), "--device", "cpu"], env, "W1")
    yield worker
    worker.stop()


def upload(stack, source: Path, key: str) -> str:
    """Put a file under input/; its inference id, as the worker and the Lambda derive it."""
    stack.s3.upload_file(str(source), stack.bucket, key)
    etag = stack.s3.head_object(Bucket=stack.bucket, Key=key)["ETag"]
    return inference_id(stack.bucket, key, etag)


def notification(stack, inference: str, timeout: float = ANSWER_WITHIN) -> dict:
    """The SageMaker-shaped notification for ``inference``, from the queue subscribed to both topics."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for note in stack.received:
            if note["inferenceId"] == inference:
                return note
        for message in stack.sqs.receive_message(QueueUrl=stack.notes, MaxNumberOfMessages=10,
                                                 WaitTimeSeconds=1).get("Messages", []):
            stack.received.append(json.loads(json.loads(message["Body"])["Message"]))  # SNS envelope
            stack.sqs.delete_message(QueueUrl=stack.notes, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError(f"no notification for {inference} within {timeout} s")


def queue_drained(stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = stack.sqs.get_queue_attributes(QueueUrl=stack.jobs, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if all(value == "0" for value in attributes.values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"messages left in the jobs queue: {attributes}")


def outputs(stack, prefix: str) -> list[str]:
    return [o["Key"] for o in stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix).get("Contents", [])]


def test_queue_success_and_failure(stack, w1, sample_wav, broken):
    started = time.monotonic()
    key = "input/episode 1.wav"  # a space: S3 sends it URL-encoded
    inference = upload(stack, sample_wav, key)
    note = notification(stack, inference)
    assert time.monotonic() - started < ANSWER_WITHIN
    assert note["invocationStatus"] == "Completed" and note["eventSource"] == "aws:sagemaker"
    assert note["requestParameters"]["inputLocation"] == f"s3://{stack.bucket}/{key}"
    location = note["responseParameters"]["outputLocation"]
    assert location == f"s3://{stack.bucket}/output/{inference}.out"
    body = stack.s3.get_object(Bucket=stack.bucket, Key=f"output/{inference}.out")
    result = json.loads(body["Body"].read())
    assert body["ContentType"] == "application/json"
    assert result["num_speakers"] == 2 and result["uri"] == "episode 1" and result["segments"]
    # the message stayed hidden while the file ran (visibility 6 s, extended every 1 s): one run only
    assert w1.count("extended message visibility") >= 1
    assert w1.count(re.escape(f"processing s3://{stack.bucket}/{key}")) == 1
    assert w1.count("S3 test event: deleted") == 1

    bad = upload(stack, broken, "input/broken.mp3")
    note = notification(stack, bad)
    assert note["invocationStatus"] == "Failed"
    assert note["failureReason"].startswith(f"s3://{stack.bucket}/input/broken.mp3: ")  # not a temporary path
    report = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=f"failed/{bad}-error.out")["Body"].read())
    assert report["error"] == "unsupported_media" and report["inputLocation"] == f"s3://{stack.bucket}/input/broken.mp3"
    assert f"output/{bad}.out" not in outputs(stack, "output/")
    queue_drained(stack)


def test_queue_redelivered_event_is_not_processed_twice(stack, w1):
    key = "input/episode 1.wav"
    head = stack.s3.head_object(Bucket=stack.bucket, Key=key)
    inference = inference_id(stack.bucket, key, head["ETag"])
    before = stack.s3.head_object(Bucket=stack.bucket, Key=f"output/{inference}.out")["LastModified"]
    event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                          "eventName": "ObjectCreated:Put", "s3": {
                              "s3SchemaVersion": "1.0", "bucket": {"name": stack.bucket},
                              "object": {"key": quote_plus(key), "size": head["ContentLength"],
                                         "eTag": head["ETag"].strip('"')}}}]}
    for _ in range(2):  # at-least-once delivery: the same event again, twice
        stack.sqs.send_message(QueueUrl=stack.jobs, MessageBody=json.dumps(event))
    w1.wait_for("already processed", count=2, timeout=60)
    queue_drained(stack)
    assert stack.s3.head_object(Bucket=stack.bucket, Key=f"output/{inference}.out")["LastModified"] == before
    assert sum(n["inferenceId"] == inference for n in stack.received) == 1
    assert w1.count(re.escape(f"processing s3://{stack.bucket}/{key}")) == 1


def test_queue_worker_killed_mid_file_loses_nothing(stack, w1, clip, env, server):
    inference = upload(stack, clip, "input/clip.wav")
    w1.wait_for(re.escape(f"processing s3://{stack.bucket}/input/clip.wav"))
    w1.kill()
    assert f"output/{inference}.out" not in outputs(stack, "output/")
    # restarted (posting to `diarkit serve` this time): the message reappears after W1's 6 s visibility
    w2 = Process(queue_args(stack, visibility=60) + ["--serve-url", server], env, "W2")
    try:
        note = notification(stack, inference)
        assert note["invocationStatus"] == "Completed"
        result = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=f"output/{inference}.out")["Body"].read())
        assert result["uri"] == "clip" and result["segments"]
        queue_drained(stack)

        # SIGTERM mid-file: exit 0 and the message is back at once (not after W2's 60 s visibility)
        upload(stack, clip, "input/clip 2.wav")
        w2.wait_for(re.escape(f"processing s3://{stack.bucket}/input/clip 2.wav"))
        assert w2.terminate() == 0
        messages = stack.sqs.receive_message(QueueUrl=stack.jobs, WaitTimeSeconds=5).get("Messages", [])
        assert messages and "clip+2.wav" in messages[0]["Body"].replace("%2F", "/")
        stack.sqs.delete_message(QueueUrl=stack.jobs, ReceiptHandle=messages[0]["ReceiptHandle"])
    finally:
        w2.stop()


# --------------------------------------------------------------------------- watch mode


def drop(source: Path, folder: Path, name: str | None = None) -> Path:
    """Copy under a hidden name, then rename: the worker never sees half a file."""
    target = folder / "input" / (name or source.name)
    partial = target.with_name(f".{target.name}.part")
    shutil.copyfile(source, partial)
    os.replace(partial, target)
    return target


def wait_path(pattern: str, folder: Path, timeout: float = ANSWER_WITHIN) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} in {folder} within {timeout} s: {sorted(p.name for p in folder.rglob('*'))}")


def watch_args(folder: Path) -> list[str]:
    return ["worker", "--watch", str(folder), "--settle", "0.3", "--poll-interval", "0.2", "--formats", "json,srt"]


def test_watch_folder_success_failure_kill_and_stop(tmp_path, env, model_dir, sample_wav, broken, clip, server):
    folder = tmp_path / "drop"
    w3 = Process(watch_args(folder) + ["--model-dir", str(model_dir), "--device", "cpu"], env, "W3")
    w4 = None
    try:
        w3.wait_for("watching")
        drop(sample_wav, folder)
        drop(broken, folder)
        result = json.loads(wait_path("output/sample.json", folder).read_text())
        assert result["num_speakers"] == 2
        assert (folder / "output" / "sample.srt").is_file() and (folder / "done" / "sample.wav").is_file()
        report = json.loads(wait_path("failed/broken.mp3.error.json", folder).read_text())
        assert report["error"] == "unsupported_media" and report["message"].startswith("broken.mp3: ")
        assert ".processing" not in report["message"] and (folder / "failed" / "broken.mp3").is_file()

        drop(clip, folder)
        wait_path(".processing/*/clip.wav", folder)
        w3.kill()
        assert not (folder / "output" / "clip.json").exists()
        # restarted (through `diarkit serve`): the file left by the killed worker is taken again
        w4 = Process(watch_args(folder) + ["--serve-url", server], env, "W4")
        assert json.loads(wait_path("output/clip.json", folder).read_text())["segments"]
        assert (folder / "done" / "clip.wav").is_file()
        assert w4.count("back to input/") == 1

        drop(clip, folder, "clip 2.wav")
        wait_path(".processing/*/clip 2.wav", folder)
        assert w4.terminate() == 0
        assert (folder / "input" / "clip 2.wav").is_file()  # back where it came from
        assert not list((folder / ".processing").iterdir())
        assert sorted(p.name for p in (folder / "input").iterdir()) == ["clip 2.wav"]
    finally:
        w3.stop()
        if w4 is not None:
            w4.stop()
