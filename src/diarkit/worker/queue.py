"""``diarkit worker``: the asynchronous data plane of a SageMaker async endpoint, locally.

Queue mode: consume S3 event notifications from an SQS queue; for each created object,
download it, run it (the pipeline in this process, or POST to a ``diarkit serve`` URL),
write ``<output>/<inference-id>.out`` (or ``<failure>/<inference-id>-error.out``) and
publish a notification shaped like SageMaker's. The inference id is a uuid5 of bucket,
key and ETag/version, so a redelivered event finds its output and is not run twice.
A message is deleted only after its output is written; while a long file runs, a
heartbeat keeps the message invisible; on SIGTERM the message goes straight back.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diarkit.errors import DiarkitError, InputNotFoundError
from diarkit.request import RequestOptions
from diarkit.worker.claims import Claim, ClaimedElsewhere, ClaimStore
from diarkit.worker.common import Shutdown, classify, error_document
from diarkit.worker.notifications import failure_message, success_message
from diarkit.worker.processors import Processor, TransientError
from diarkit.worker.s3events import (S3Object, as_prefix, content_type_for, is_under, object_inference_id,
                                     parse_message, parse_s3_uri)
from diarkit.writers import CONTENT_TYPES, parse_formats, render_bytes

logger = logging.getLogger(__name__)

MISSING_KEY_CODES = {"404", "NoSuchKey", "NotFound"}

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
    options: RequestOptions = field(default_factory=RequestOptions)
    tmp_dir: str | None = None

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_interval or max(1.0, self.visibility_timeout / 3)


class VisibilityHeartbeat:
    """Keeps an SQS message invisible while its file is processed (else SQS redelivers it mid-work)."""

    def __init__(self, sqs, queue_url: str, receipt: str, timeout: int, interval: float, worker=None):
        self.sqs, self.queue_url, self.receipt = sqs, queue_url, receipt
        self.timeout, self.interval = timeout, interval
        self.worker = worker  # its claim in hand is renewed with each beat
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
            claim = getattr(self.worker, "claim", None)
            if claim is not None:
                claim.renew()


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
        self.accept_format = settings.options.format or parse_formats(settings.accept)[0]
        # the claim lasts as long as the message stays hidden, and is renewed with it
        self.claims = ClaimStore(self.s3, self.output[0], self.output[1], lease=settings.visibility_timeout)
        self.claim: Claim | None = None

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
                try:
                    self.handle(message)
                except Exception:  # noqa: BLE001 - last resort: log it; the queue redelivers or dead-letters it
                    logger.exception("message %s could not be handled; left to the queue's redrive policy",
                                     message.get("MessageId"))
                handled += 1

    def handle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        try:
            parsed = parse_message(message["Body"])
        except Exception as exc:  # noqa: BLE001 - a poison message must never stop the worker
            logger.error("message %s is not an S3 event notification (%s: %s): deleted",
                         message.get("MessageId"), type(exc).__name__, exc)
            self._delete(receipt)
            return
        if parsed.test_event:
            logger.info("S3 test event: deleted")
            self._delete(receipt)
            return
        self._delivery = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
        heartbeat = VisibilityHeartbeat(self.sqs, self.settings.queue_url, receipt,
                                        self.settings.visibility_timeout, self.settings.heartbeat, self).start()
        try:
            for obj in parsed.objects:
                self.process(obj)
        except Shutdown:
            heartbeat.stop()
            self._release(receipt, 0)
            logger.warning("stopping: the message in flight is back in the queue")
            raise
        except ClaimedElsewhere as exc:
            heartbeat.stop()
            logger.info("another worker is running it (%s): the message is back in the queue for %d s",
                        exc, self.settings.retry_delay)
            self._release(receipt, self.settings.retry_delay)
            return
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
        self.claim = self.claims.acquire(inference_id, obj.uri)  # ClaimedElsewhere: another worker has it
        try:
            if self._exists(*output) or self._exists(*failure):  # finished between our check and our claim
                logger.info("%s already processed (inference %s): skipped", obj.uri, inference_id)
                return "duplicate"
            return self._run(obj, inference_id, output, failure)
        finally:
            claim, self.claim = self.claim, None
            claim.release()

    def _run(self, obj: S3Object, inference_id: str, output: tuple[str, str], failure: tuple[str, str]) -> str:
        received = datetime.now(timezone.utc)
        logger.info("processing %s (inference %s, delivery %s)", obj.uri, inference_id, self._delivery)
        content_type = content_type_for(obj.key)
        with tempfile.TemporaryDirectory(prefix="diarkit-worker-", dir=self.settings.tmp_dir) as tmp:
            local = Path(tmp) / f"input{obj.suffix}"
            try:
                self._download(obj, local)
                result = self.processor(local, uri=obj.stem, content_type=content_type,
                                        options=self.settings.options)
                body = render_bytes(result, self.accept_format)
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
                "custom_attributes": self.settings.options.to_custom_attributes() or None}

    def _report_failure(self, obj: S3Object, inference_id: str, failure: tuple[str, str], exc: Exception,
                        local: Path, received: datetime, content_type: str) -> str:
        kind, message, status = classify(exc, local, obj.uri)
        document = error_document(kind, message, status, inferenceId=inference_id, inputLocation=obj.uri)
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
