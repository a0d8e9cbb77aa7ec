"""``diarkit worker``: the asynchronous data plane of a SageMaker async endpoint, locally.

Queue mode: consume S3 event notifications from an SQS queue; for each created object,
download it, run it (the pipeline in this process, or POST to a ``diarkit serve`` URL),
write ``<output>/<inference-id>.out`` (or ``<failure>/<inference-id>-error.out``) and
publish a notification shaped like SageMaker's. The inference id is a uuid5 of bucket,
key and ETag/version, so a redelivered event finds its output and is not run twice.
A message is deleted only after its output is written; while a long file runs, a
heartbeat keeps the message invisible; on SIGTERM the message goes straight back.

Watch mode (``--watch DIR``): the same for a folder, no AWS at all. ``DIR/input/`` ->
``DIR/output/<stem>.<fmt>`` (inputs then move to ``DIR/done/``), failures to
``DIR/failed/<name>`` + ``<name>.error.json``. A file being processed sits in
``DIR/.processing/<worker>/``, whose lock dies with its worker: a restarted worker puts
files left there by a killed one back into ``input/``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .cli import DEFAULT_MODEL_DIR
from .errors import DiarkitError, InputNotFoundError, OptionsError
from .notifications import failure_message, success_message, timestamp
from .options import parse_custom_attributes
from .processors import (HttpProcessor, LocalProcessor, Processor, TransientError,
                         build_custom_attributes)
from .s3events import (S3Object, as_prefix, content_type_for, is_under, object_inference_id,
                       parse_message, parse_s3_uri)
from .writers import CONTENT_TYPES, atomic_write_text, parse_formats, render, write_outputs

logger = logging.getLogger(__name__)

MISSING_KEY_CODES = {"404", "NoSuchKey", "NotFound"}


class Shutdown(BaseException):
    """SIGTERM or SIGINT: give the work item in flight back (BaseException: nothing swallows it)."""


def install_signal_handlers() -> None:
    def handler(signum, frame):  # noqa: ARG001
        # a second signal during the hand-back must not interrupt it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _error_document(kind: str, message: str, status: int, **extra: Any) -> str:
    return json.dumps({"error": kind, "message": message, "status": status, "time": timestamp(), **extra},
                      ensure_ascii=False, indent=2) + "\n"


def _classify(exc: Exception, local: Path, shown: str) -> tuple[str, str, int]:
    """(kind, one-line message, status) for a failure report, naming the input as users know it."""
    if isinstance(exc, DiarkitError):
        kind, message, status = exc.kind, str(exc), exc.status
    else:
        kind, message, status = "internal_error", f"unexpected error: {type(exc).__name__}: {exc}", 500
    return kind, message.replace(str(local), shown), status


# --------------------------------------------------------------------------- queue mode


@dataclass
class QueueSettings:
    queue_url: str
    output_path: str  # s3://bucket/prefix/
    failure_path: str | None = None  # default: the output path, as SageMaker does
    success_topic: str | None = None
    error_topic: str | None = None
    endpoint_name: str = "diarkit-worker"  # reported in notifications
    visibility_timeout: int = 300
    heartbeat_interval: float | None = None  # default: a third of the visibility timeout
    wait_time: int = 20
    retry_delay: int = 30  # visibility left on a message that failed for a transient reason
    accept: str = "json"
    custom_attributes: str = ""
    tmp_dir: str | None = None

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_interval or max(1.0, self.visibility_timeout / 3)


class VisibilityHeartbeat:
    """Keeps an SQS message invisible while its file is processed (else SQS redelivers it mid-work)."""

    def __init__(self, sqs, queue_url: str, receipt: str, timeout: int, interval: float):
        self.sqs, self.queue_url, self.receipt = sqs, queue_url, receipt
        self.timeout, self.interval = timeout, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visibility-heartbeat", daemon=True)

    def start(self) -> "VisibilityHeartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=self.receipt,
                                                   VisibilityTimeout=self.timeout)
                logger.info("extended message visibility by %d s", self.timeout)
            except Exception as exc:  # noqa: BLE001 - the next beat may succeed; the work goes on
                logger.warning("could not extend message visibility: %s", exc)


class QueueWorker:
    def __init__(self, settings: QueueSettings, processor: Processor, session=None,
                 endpoint_url: str | None = None):
        import boto3

        session = session or boto3.session.Session()
        self.settings = settings
        self.processor = processor
        self.region = session.region_name
        self.s3 = session.client("s3", endpoint_url=endpoint_url)
        self.sqs = session.client("sqs", endpoint_url=endpoint_url)
        self.sns = session.client("sns", endpoint_url=endpoint_url)
        out_bucket, out_prefix = parse_s3_uri(settings.output_path)
        fail_bucket, fail_prefix = parse_s3_uri(settings.failure_path or settings.output_path)
        self.output = (out_bucket, as_prefix(out_prefix))
        self.failure = (fail_bucket, as_prefix(fail_prefix))
        # a ``format`` custom attribute wins over --accept, as in `diarkit serve`
        self._delivery = "1"  # ApproximateReceiveCount of the message in hand, for the log
        self.accept_format = (parse_custom_attributes(settings.custom_attributes).format
                              or parse_formats(settings.accept)[0])

    def check(self) -> None:
        """Fail at start, not at the first message, when the queue is wrong."""
        self.sqs.get_queue_attributes(QueueUrl=self.settings.queue_url, AttributeNames=["QueueArn"])

    def run(self, max_messages: int | None = None) -> None:
        handled = 0
        logger.info("waiting for S3 events on %s", self.settings.queue_url)
        while max_messages is None or handled < max_messages:
            try:
                response = self.sqs.receive_message(
                    QueueUrl=self.settings.queue_url, MaxNumberOfMessages=1,
                    WaitTimeSeconds=self.settings.wait_time, VisibilityTimeout=self.settings.visibility_timeout,
                    AttributeNames=["ApproximateReceiveCount"])
            except Exception as exc:  # noqa: BLE001 - a network blip must not stop the worker
                logger.error("receiving from %s failed: %s; retrying in 5 s", self.settings.queue_url, exc)
                time.sleep(5)
                continue
            for message in response.get("Messages", []):
                self.handle(message)
                handled += 1

    def handle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        try:
            parsed = parse_message(message["Body"])
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("message %s is not an S3 event notification (%s): deleted",
                         message.get("MessageId"), exc)
            self._delete(receipt)
            return
        if parsed.test_event:
            logger.info("S3 test event: deleted")
            self._delete(receipt)
            return
        self._delivery = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
        heartbeat = VisibilityHeartbeat(self.sqs, self.settings.queue_url, receipt,
                                        self.settings.visibility_timeout, self.settings.heartbeat).start()
        try:
            for obj in parsed.objects:
                self.process(obj)
        except Shutdown:
            heartbeat.stop()
            self._release(receipt, 0)
            logger.warning("stopping: the message in flight is back in the queue")
            raise
        except Exception as exc:  # noqa: BLE001 - transient (S3, SNS, server down): retry later
            heartbeat.stop()
            logger.error("%s; the message will be retried in %d s", exc, self.settings.retry_delay)
            self._release(receipt, self.settings.retry_delay)
            return
        finally:
            heartbeat.stop()
        self._delete(receipt)

    def locations(self, inference_id: str) -> tuple[tuple[str, str], tuple[str, str]]:
        """(bucket, key) of the output and of the failure report for one inference."""
        return ((self.output[0], f"{self.output[1]}{inference_id}.out"),
                (self.failure[0], f"{self.failure[1]}{inference_id}-error.out"))

    def process(self, obj: S3Object) -> str:
        """Run one object; returns completed, failed, duplicate or skipped."""
        if is_under(obj.bucket, obj.key, [self.output, self.failure]):
            logger.info("%s is one of our own results: skipped", obj.uri)
            return "skipped"
        if obj.key.endswith("/"):
            logger.info("%s is a folder marker: skipped", obj.uri)
            return "skipped"
        inference_id = object_inference_id(obj)
        output, failure = self.locations(inference_id)
        if self._exists(*output) or self._exists(*failure):
            logger.info("%s already processed (inference %s): skipped", obj.uri, inference_id)
            return "duplicate"
        received = datetime.now(timezone.utc)
        logger.info("processing %s (inference %s, delivery %s)", obj.uri, inference_id, self._delivery)
        content_type = content_type_for(obj.key)
        with tempfile.TemporaryDirectory(prefix="diarkit-worker-", dir=self.settings.tmp_dir) as tmp:
            local = Path(tmp) / f"input{obj.suffix}"
            try:
                self._download(obj, local)
                result = self.processor(local, uri=obj.stem, content_type=content_type,
                                        attributes=self.settings.custom_attributes)
                body = render(result, self.accept_format).encode("utf-8")
            except TransientError:
                raise
            except Exception as exc:  # noqa: BLE001 - the file failed: report it, do not retry
                if not isinstance(exc, DiarkitError):
                    logger.exception("unexpected failure on %s", obj.uri)
                return self._report_failure(obj, inference_id, failure, exc, local, received, content_type)
        output_type = CONTENT_TYPES[self.accept_format]
        self.s3.put_object(Bucket=output[0], Key=output[1], Body=body, ContentType=output_type)
        location = f"s3://{output[0]}/{output[1]}"
        self._publish(self.settings.success_topic, success_message(
            inference_id=inference_id, input_location=obj.uri, output_location=location,
            output_content_type=output_type, **self._request(content_type, received)))
        logger.info("completed %s -> %s (%d speakers)", obj.uri, location, result.num_speakers)
        return "completed"

    def _request(self, content_type: str, received: datetime) -> dict[str, Any]:
        return {"endpoint_name": self.settings.endpoint_name, "content_type": content_type,
                "accept": CONTENT_TYPES[self.accept_format], "received": received, "region": self.region,
                "custom_attributes": self.settings.custom_attributes or None}

    def _report_failure(self, obj: S3Object, inference_id: str, failure: tuple[str, str], exc: Exception,
                        local: Path, received: datetime, content_type: str) -> str:
        kind, message, status = _classify(exc, local, obj.uri)
        document = _error_document(kind, message, status, inferenceId=inference_id, inputLocation=obj.uri)
        self.s3.put_object(Bucket=failure[0], Key=failure[1], Body=document.encode("utf-8"),
                           ContentType="application/json")
        location = f"s3://{failure[0]}/{failure[1]}"
        self._publish(self.settings.error_topic, failure_message(
            inference_id=inference_id, input_location=obj.uri, failure_location=location,
            failure_reason=message, **self._request(content_type, received)))
        logger.error("failed %s: %s -> %s", obj.uri, message, location)
        return "failed"

    def _download(self, obj: S3Object, local: Path) -> None:
        extra = {"VersionId": obj.version_id} if obj.version_id else None
        try:
            self.s3.download_file(obj.bucket, obj.key, str(local), ExtraArgs=extra)
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in MISSING_KEY_CODES:
                raise InputNotFoundError("the object no longer exists", path=obj.uri) from exc
            raise TransientError(f"downloading {obj.uri}: {exc}") from exc

    def _exists(self, bucket: str, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in MISSING_KEY_CODES:
                return False
            raise

    def _publish(self, topic: str | None, message: dict[str, Any]) -> None:
        if topic:
            self.sns.publish(TopicArn=topic, Message=json.dumps(message))

    def _delete(self, receipt: str) -> None:
        self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=receipt)

    def _release(self, receipt: str, delay: int) -> None:
        try:
            self.sqs.change_message_visibility(QueueUrl=self.settings.queue_url, ReceiptHandle=receipt,
                                               VisibilityTimeout=delay)
        except Exception as exc:  # noqa: BLE001 - it comes back after its visibility timeout anyway
            logger.warning("could not return the message to the queue: %s", exc)


# --------------------------------------------------------------------------- watch mode


@dataclass
class FolderSettings:
    root: Path
    formats: list[str] = field(default_factory=lambda: ["json"])
    poll_interval: float = 1.0
    settle: float = 2.0  # a file must be this old (mtime) before it is taken: copies in progress
    retry_delay: float = 5.0
    custom_attributes: str = ""


class FolderWorker:
    def __init__(self, settings: FolderSettings, processor: Processor):
        self.settings = settings
        self.processor = processor
        root = Path(settings.root)
        self.input, self.output = root / "input", root / "output"
        self.failed, self.done, self.processing = root / "failed", root / "done", root / ".processing"
        self.claims: Path | None = None
        self._lock_fd: int | None = None

    def start(self) -> None:
        for folder in (self.input, self.output, self.failed, self.done, self.processing):
            folder.mkdir(parents=True, exist_ok=True)
        self.recover()
        claims = self.processing / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        claims.mkdir()
        self._lock_fd = os.open(claims / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.claims = claims
        logger.info("watching %s", self.input)

    def close(self) -> None:
        if self.claims is None:
            return
        for leftover in self.claims.iterdir():
            if leftover.name != ".lock":
                self._move_back(leftover)
        (self.claims / ".lock").unlink(missing_ok=True)
        os.close(self._lock_fd)
        self.claims.rmdir()
        self.claims = None

    def recover(self) -> int:
        """Put back files whose worker died (its lock is free) into input/."""
        recovered = 0
        for claims in sorted(p for p in self.processing.iterdir() if p.is_dir()):
            lock = claims / ".lock"
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a live worker holds it
            try:
                for leftover in claims.iterdir():
                    if leftover.name != ".lock":
                        logger.warning("%s was in flight in a worker that stopped: back to input/", leftover.name)
                        self._move_back(leftover)
                        recovered += 1
                lock.unlink(missing_ok=True)
                claims.rmdir()
            finally:
                os.close(fd)
        return recovered

    def run(self, max_files: int | None = None) -> None:
        self.start()
        try:
            done = 0
            while max_files is None or done < max_files:
                count = self.run_once(max_files=None if max_files is None else max_files - done)
                done += count
                if not count:
                    time.sleep(self.settings.poll_interval)
        finally:
            self.close()

    def run_once(self, max_files: int | None = None) -> int:
        """Process every file that is ready now; returns how many were taken."""
        taken = 0
        while max_files is None or taken < max_files:
            path = self.next_ready()
            if path is None:
                break
            claimed = self.claim(path)
            if claimed is None:
                continue
            taken += 1
            try:
                self.process(claimed)
            except Shutdown:
                if claimed.exists():
                    self._move_back(claimed)
                    logger.warning("stopping: %s is back in input/", claimed.name)
                raise
        return taken

    def next_ready(self) -> Path | None:
        newest = time.time() - self.settings.settle
        ready = []
        for path in self.input.iterdir():
            if path.name.startswith(".") or not path.is_file():
                continue  # hidden names are copies in progress by convention
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if mtime <= newest:
                ready.append((mtime, path.name, path))
        return min(ready)[2] if ready else None

    def claim(self, path: Path) -> Path | None:
        target = self.claims / path.name
        try:
            os.rename(path, target)  # atomic: of two workers, one wins
        except FileNotFoundError:
            return None
        return target

    def process(self, claimed: Path) -> str:
        name = claimed.name
        logger.info("processing %s", self.input / name)
        try:
            result = self.processor(claimed, uri=Path(name).stem, content_type=content_type_for(name),
                                    attributes=self.settings.custom_attributes)
        except TransientError as exc:
            logger.error("%s: %s; retrying in %.0f s", name, exc, self.settings.retry_delay)
            self._move_back(claimed)
            time.sleep(self.settings.retry_delay)
            return "retry"
        except Exception as exc:  # noqa: BLE001 - the file failed: report it and go on
            if not isinstance(exc, DiarkitError):
                logger.exception("unexpected failure on %s", name)
            kind, message, status = _classify(exc, claimed, name)
            atomic_write_text(self.failed / f"{name}.error.json",
                              _error_document(kind, message, status, input=name))
            os.replace(claimed, self.failed / name)
            logger.error("failed %s: %s", name, message)
            return "failed"
        written = write_outputs(result, self.output, self.settings.formats, stem=Path(name).stem)
        os.replace(claimed, self.done / name)
        logger.info("completed %s -> %s (%d speakers)", name, ", ".join(p.name for p in written),
                    result.num_speakers)
        return "completed"

    def _move_back(self, path: Path) -> None:
        target = self.input / path.name
        counter = 1
        while target.exists():  # never overwrite a newer drop with the same name
            target = self.input / f"{Path(path.name).stem}.{counter}{Path(path.name).suffix}"
            counter += 1
        os.rename(path, target)


# --------------------------------------------------------------------------- command line


def add_subcommand(subparsers) -> None:
    p = subparsers.add_parser(
        "worker", help="process media dropped into S3 (events from SQS) or into a folder",
        description="The asynchronous-endpoint data plane, locally: S3 event notifications from an "
                    "SQS queue (--queue-url), or a folder (--watch DIR).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--queue-url", help="SQS queue receiving the S3 ObjectCreated notifications")
    source.add_argument("--watch", metavar="DIR", help="folder mode: DIR/input -> DIR/output, DIR/failed")
    engine = p.add_mutually_exclusive_group()
    engine.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        help="run the pipeline in this process with this model directory (default)")
    engine.add_argument("--serve-url", help="POST each file to this `diarkit serve` URL instead")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda (in-process only)")
    p.add_argument("--num-speakers", type=int, help="exact number of speakers, when known")
    p.add_argument("--min-speakers", type=int, help="at least this many speakers")
    p.add_argument("--max-speakers", type=int, help="at most this many speakers")
    p.add_argument("--language", help="language code")
    p.add_argument("--custom-attributes", default="",
                   help="as SageMaker passes them, e.g. 'num_speakers=2;language=en'")
    q = p.add_argument_group("queue mode")
    q.add_argument("--output", metavar="S3URI", help="where results go: s3://bucket/output/ (required)")
    q.add_argument("--failure", metavar="S3URI", help="where failure reports go (default: --output)")
    q.add_argument("--success-topic", metavar="ARN", help="SNS topic for success notifications")
    q.add_argument("--error-topic", metavar="ARN", help="SNS topic for error notifications")
    q.add_argument("--endpoint-name", default="diarkit-worker", help="name reported in notifications")
    q.add_argument("--visibility-timeout", type=int, default=300,
                   help="seconds a received message stays hidden; extended while it runs (default 300)")
    q.add_argument("--heartbeat", type=float, help="seconds between extensions (default: a third of it)")
    q.add_argument("--wait-time", type=int, default=20, help="SQS long-poll seconds (default 20)")
    q.add_argument("--accept", default="json", help="output format of the .out object (default json)")
    q.add_argument("--endpoint-url", help="S3/SQS/SNS endpoint (default: AWS_ENDPOINT_URL or AWS)")
    q.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION)")
    q.add_argument("--tmp-dir", help="where inputs are downloaded (default: the system's)")
    w = p.add_argument_group("watch mode")
    w.add_argument("--formats", default="json", help="output formats (default json)")
    w.add_argument("--poll-interval", type=float, default=1.0, help="seconds between scans (default 1)")
    w.add_argument("--settle", type=float, default=2.0,
                   help="a file must be unchanged this long before it is taken (default 2 s)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    p.set_defaults(handler=cmd_worker)


def _make_processor(args) -> Processor:
    if args.serve_url:
        processor = HttpProcessor(args.serve_url)
        processor.wait_ready()
        return processor
    return LocalProcessor(args.model_dir, device=args.device)


def cmd_worker(args) -> int:
    logging.getLogger("diarkit").setLevel(logging.WARNING if args.quiet else logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    try:
        attributes = build_custom_attributes(args.num_speakers, args.min_speakers, args.max_speakers,
                                             args.language, args.custom_attributes)
        formats = parse_formats(args.formats)
        if args.queue_url and not args.output:
            raise OptionsError("--output s3://bucket/prefix/ is required with --queue-url")
        if args.output:
            parse_s3_uri(args.output)
        if args.failure:
            parse_s3_uri(args.failure)
    except (OptionsError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    install_signal_handlers()
    try:
        try:
            processor = _make_processor(args)
        except (DiarkitError, TransientError) as exc:
            logger.error("%s", exc)
            return 2
        if args.watch:
            FolderWorker(FolderSettings(Path(args.watch), formats=formats, poll_interval=args.poll_interval,
                                        settle=args.settle, custom_attributes=attributes), processor).run()
            return 0
        worker = QueueWorker(QueueSettings(
            queue_url=args.queue_url, output_path=args.output, failure_path=args.failure,
            success_topic=args.success_topic, error_topic=args.error_topic, endpoint_name=args.endpoint_name,
            visibility_timeout=args.visibility_timeout, heartbeat_interval=args.heartbeat,
            wait_time=args.wait_time, accept=args.accept, custom_attributes=attributes, tmp_dir=args.tmp_dir,
        ), processor, session=_session(args.region), endpoint_url=args.endpoint_url)
        try:
            worker.check()
        except Exception as exc:  # noqa: BLE001 - wrong queue or no credentials: say so and stop
            logger.error("cannot use queue %s: %s", args.queue_url, exc)
            return 1
        worker.run()
        return 0
    except Shutdown as stop:
        logger.info("stopped (%s)", stop)
        return 0


def _session(region: str | None):
    import boto3

    return boto3.session.Session(region_name=region)
