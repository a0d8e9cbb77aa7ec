"""`diarkit worker` against poison input: real worker processes, a real `diarkit serve`, moto on loopback.

Watch mode: names that are not UTF-8 or very long, playlists, symbolic links, hidden names
and folders, duplicate names, read-only and full output folders. Queue mode: malformed
messages, and the same S3 event delivered to two workers at once. The workers post to
one server, so only the server loads the models.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest

from conftest import ffmpeg
from test_worker_e2e import Process, drop, free_port, wait_path
from diarkit.worker.s3events import inference_id

LONG_STEM = "日本語のファイル名" * 8 + "長い名前です"  # 78 characters, 234 bytes


@pytest.fixture(scope="module")
def env(moto_endpoint) -> dict[str, str]:
    environ = dict(os.environ, AWS_ENDPOINT_URL=moto_endpoint, PYTHONUNBUFFERED="1")
    for key in [k for k in environ if k.startswith("DIARKIT_")]:
        environ.pop(key)
    return environ


@pytest.fixture(scope="module")
def server(env, model_dir):
    port = free_port()
    proc = Process(["serve", "--host", "127.0.0.1", "--port", str(port), "--model-dir", str(model_dir),
                    "--device", "cpu", "--graceful-timeout", "1"], env, "serve")
    from diarkit.worker.processors import HttpProcessor

    HttpProcessor(f"http://127.0.0.1:{port}").wait_ready(timeout=300, interval=0.3)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory, sample_wav) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    clip = root / "clip.wav"
    ffmpeg("-ss", "6", "-t", "4", "-i", str(sample_wav), str(clip))
    mp3 = root / "clip.mp3"
    ffmpeg("-i", str(clip), str(mp3))
    secret = root / "secret.wav"  # a file outside the watched folder
    shutil.copy(clip, secret)
    playlist = root / "playlist.wav"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:4.0,\n{secret}\n#EXT-X-ENDLIST\n")
    return {"clip": clip, "mp3": mp3, "secret": secret, "playlist": playlist}


def watch(folder: Path, server: str, env: dict, name: str) -> Process:
    worker = Process(["worker", "--watch", str(folder), "--serve-url", server, "--settle", "0.3",
                      "--poll-interval", "0.2", "--formats", "json,srt"], env, name)
    return worker


def names(folder: Path) -> list[str]:
    return sorted(os.fsdecode(n) for n in os.listdir(os.fsencode(folder)) if not n.startswith(b"."))


# --------------------------------------------------------------------------- watch mode


def test_watch_mode_survives_poison_names_and_never_replaces(tmp_path, env, server, media):
    os.umask(0o022)
    folder = tmp_path / "drop"
    worker = watch(folder, server, env, "W")
    try:
        worker.wait_for("watching")
        inbox = folder / "input"
        bad_name = os.fsdecode(b"bad \xff\xfe name.wav")  # not UTF-8
        long_name = f"{LONG_STEM}.wav"
        (inbox / ".copying.wav").write_bytes(b"partial")
        (inbox / "season 2").mkdir()
        os.symlink(media["secret"], inbox / "link.wav")
        drop(media["playlist"], folder)
        drop(media["clip"], folder, bad_name)
        drop(media["clip"], folder, long_name)
        drop(media["clip"], folder, "a.wav")
        drop(media["mp3"], folder, "a.mp3")
        drop(media["clip"], folder, "dup.wav")
        worker.wait_for(r"completed .*dup\.wav", timeout=300)
        drop(media["clip"], folder, "dup.wav")  # the same name again
        drop(media["playlist"], folder)  # a second failure with the same name
        worker.wait_for(r"completed .*dup\.wav", count=2, timeout=300)
        worker.wait_for(r"failed playlist\.wav", count=2, timeout=60)
        worker.wait_for(r"failed link\.wav", timeout=60)
        worker.wait_for(r"completed .*a\.mp3", timeout=300)
        worker.wait_for(r"completed .*a\.wav", timeout=300)
        worker.wait_for(r"completed .*bad", timeout=300)
        worker.wait_for(r"completed .*名前です\.wav", timeout=300)
        assert worker.proc.poll() is None  # alive after all of it

        outputs = names(folder / "output")
        # nothing replaced: two results for dup, one each for a.wav and a.mp3
        assert {"dup.json", "dup.1.json", "a.json", "a.1.json", "dup.srt", "dup.1.srt"} <= set(outputs)
        assert {"dup.wav", "dup.1.wav", "a.wav", "a.mp3", long_name} <= set(names(folder / "done"))
        assert os.fsencode(bad_name) in os.listdir(os.fsencode(folder / "done"))
        # the name that is not UTF-8 gives valid UTF-8 outputs; the long one fits the 255-byte limit
        bad_out = [n for n in outputs if n.startswith("bad _")]
        assert len(bad_out) == 2 and json.loads((folder / "output" / [n for n in bad_out if n.endswith(".json")][0])
                                                .read_text(encoding="utf-8"))["segments"]
        long_out = [n for n in outputs if n.startswith(LONG_STEM[:20])]
        assert len(long_out) == 2 and all(len(n.encode()) <= 255 for n in long_out)
        for name in outputs:
            assert (folder / "output" / name).stat().st_mode & 0o777 == 0o644  # the umask, not 0600

        failed = names(folder / "failed")
        assert {"playlist.wav", "playlist.1.wav", "link.wav"} <= set(failed)
        for stored in ("playlist.wav", "playlist.1.wav"):
            report = json.loads((folder / "failed" / f"{stored}.error.json").read_text())
            assert report["error"] == "unsupported_media" and "(hls)" in report["message"]
            assert report["input"] == "playlist.wav" and report["stored_as"] == stored
            assert str(media["secret"]) not in report["message"]
        report = json.loads((folder / "failed" / "link.wav.error.json").read_text())
        assert "symbolic link to a path outside input/" in report["message"]
        assert (folder / "failed" / "link.wav").is_symlink()
        assert not any(n.startswith("link") or n.startswith("secret") for n in outputs)

        # hidden names and folders are left alone, and said so once
        assert sorted(os.listdir(inbox)) == [".copying.wav", "season 2"]
        assert worker.count(r"skipping .*\.copying\.wav: hidden names") == 1
        assert worker.count(r"skipping .*season 2: folders are not watched") == 1
    finally:
        worker.stop()


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")


def test_watch_mode_read_only_output_folder_fails_at_start(tmp_path, env, server):
    folder = tmp_path / "drop"
    mount_tmpfs(folder / "output", "ro,size=1m")
    try:
        worker = watch(folder, server, env, "W-ro")
        assert worker.proc.wait(60) == 2
        worker.wait_for(r"output: cannot write results here: Read-only file system")
    finally:
        subprocess.run(["umount", str(folder / "output")], check=True)


def test_watch_mode_full_output_folder_keeps_the_input_and_no_partial_output(tmp_path, env, server, media):
    folder = tmp_path / "drop"
    output = folder / "output"
    mount_tmpfs(output, "size=256k")
    worker = None
    try:
        worker = watch(folder, server, env, "W-full")
        worker.wait_for("watching")
        filler = output / ".filler"
        try:
            with open(filler, "wb") as handle:  # fill it to the last byte
                while True:
                    handle.write(b"\0" * 4096)
                    handle.flush()
        except OSError:
            pass
        drop(media["clip"], folder)
        worker.wait_for(r"clip\.wav: .*cannot write the results: No space left on device.*back in input/")
        assert names(output) == []  # neither clip.json nor clip.srt: all formats or none
        filler.unlink()  # space again: the retry succeeds
        worker.wait_for(r"completed clip\.wav", timeout=120)
        assert names(output) == ["clip.json", "clip.srt"]
    finally:
        if worker is not None:
            worker.stop()
        subprocess.run(["umount", str(output)], check=True)


# --------------------------------------------------------------------------- queue mode


@pytest.fixture(scope="module")
def stack(moto_endpoint):
    tag = uuid.uuid4().hex[:8]
    s3, sqs, sns = (boto3.client(name, endpoint_url=moto_endpoint) for name in ("s3", "sqs", "sns"))
    bucket = f"dk-poison-{tag}"
    s3.create_bucket(Bucket=bucket)
    jobs = sqs.create_queue(QueueName=f"dk-jobs-{tag}")["QueueUrl"]
    notes = sqs.create_queue(QueueName=f"dk-notes-{tag}")["QueueUrl"]
    notes_arn = sqs.get_queue_attributes(QueueUrl=notes, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name=f"dk-done-{tag}")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=notes_arn)
    return {"s3": s3, "sqs": sqs, "bucket": bucket, "jobs": jobs, "notes": notes, "topic": topic}


def queue_worker(stack, server, env, name) -> Process:
    return Process(["worker", "--queue-url", stack["jobs"], "--output", f"s3://{stack['bucket']}/output/",
                    "--failure", f"s3://{stack['bucket']}/failed/", "--success-topic", stack["topic"],
                    "--error-topic", stack["topic"], "--visibility-timeout", "30", "--wait-time", "1",
                    "--retry-delay", "2", "--serve-url", server], env, name)


def created_event(bucket: str, key: str, etag: str) -> str:
    return json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                                    "eventName": "ObjectCreated:Put", "s3": {
                                        "bucket": {"name": bucket}, "object": {"key": key, "size": 1, "eTag": etag}}}]})


def drained(stack, workers, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = stack["sqs"].get_queue_attributes(QueueUrl=stack["jobs"], AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if all(v == "0" for v in attributes.values()):
            return
        for worker in workers:
            assert worker.proc.poll() is None, f"{worker.name} exited:\n" + "\n".join(worker.lines[-30:])
        time.sleep(0.5)
    raise AssertionError(f"messages left: {attributes}")


def test_queue_poison_messages_and_one_event_on_two_workers(stack, server, env, media):
    workers = [queue_worker(stack, server, env, name) for name in ("Q1", "Q2")]
    try:
        for worker in workers:
            worker.wait_for("waiting for S3 events")
        sqs, bucket = stack["sqs"], stack["bucket"]
        poison = ['{"Records": ["x"]}', "[null]", '{"Records": [null]}', "not json at all",
                  created_event(bucket, "input/x.wav", "e").replace('"input/x.wav"', "5")]
        for body in poison:
            sqs.send_message(QueueUrl=stack["jobs"], MessageBody=body)
        drained(stack, workers)
        assert sum(w.count(r"is not an S3 event notification .*: deleted") for w in workers) == len(poison)

        # the same event delivered twice at once (S3 delivers at least once): it runs once
        key = "input/clip.wav"
        stack["s3"].upload_file(str(media["clip"]), bucket, key)
        etag = stack["s3"].head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        for _ in range(2):
            sqs.send_message(QueueUrl=stack["jobs"], MessageBody=created_event(bucket, key, etag))
        inference = inference_id(bucket, key, etag)
        drained(stack, workers)
        processing = re.escape(f"processing s3://{bucket}/{key}")
        assert sum(w.count(processing) for w in workers) == 1
        assert sum(w.count("another worker is running it") for w in workers) >= 1
        assert sum(w.count(r"already processed") for w in workers) >= 1  # the second delivery, later
        notes = []
        while messages := sqs.receive_message(QueueUrl=stack["notes"], MaxNumberOfMessages=10,
                                              WaitTimeSeconds=1).get("Messages", []):
            notes += [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
        assert [n["inferenceId"] for n in notes] == [inference]
        keys = [o["Key"] for o in stack["s3"].list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert f"output/{inference}.out" in keys and not [k for k in keys if "/.claims/" in k]
        assert all(w.proc.poll() is None for w in workers)
    finally:
        for worker in workers:
            worker.stop()
