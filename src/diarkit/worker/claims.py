"""One inference runs once, even when S3 delivers its event to two workers at the same time.

Before any work a worker creates a claim object next to the outputs with a conditional
put (``If-None-Match: *``): of two workers, exactly one succeeds. The claim holds an
expiry time that the holder's heartbeat pushes forward (``If-Match`` on its ETag); a
claim whose holder died expires, and the next delivery takes it over, again with
``If-Match`` so that only one taker wins. The claim is deleted once the output or the
failure report is written (their existence then marks the event as done).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: S3 answers a failed condition with 412 PreconditionFailed, or 409 when two puts race.
LOST_RACE_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class ClaimedElsewhere(Exception):
    """Another live worker holds the claim: leave the message for later."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


@dataclass
class Claim:
    store: "ClaimStore"
    key: str
    etag: str
    body: dict[str, Any]

    def renew(self) -> None:
        """Push the expiry forward; a claim taken over meanwhile is reported, not fought for."""
        self.body["expires"] = time.time() + self.store.lease
        try:
            response = self.store.s3.put_object(Bucket=self.store.bucket, Key=self.key, IfMatch=self.etag,
                                                Body=json.dumps(self.body).encode(), ContentType="application/json")
        except Exception as exc:  # noqa: BLE001 - the next beat may succeed
            if _code(exc) in LOST_RACE_CODES or _code(exc) in MISSING_CODES:
                logger.warning("the claim %s was taken over by another worker", self.key)
            else:
                logger.warning("could not renew the claim %s: %s", self.key, exc)
            return
        self.etag = response["ETag"]

    def release(self) -> None:
        try:
            self.store.s3.delete_object(Bucket=self.store.bucket, Key=self.key)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            logger.warning("could not delete the claim %s (it expires by itself): %s", self.key, exc)


class ClaimStore:
    """Claims under ``s3://bucket/<prefix>.claims/<inference id>.json``."""

    def __init__(self, s3, bucket: str, prefix: str, lease: float):
        self.s3, self.bucket, self.lease = s3, bucket, lease
        self.prefix = f"{prefix}.claims/"
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def key(self, inference_id: str) -> str:
        return f"{self.prefix}{inference_id}.json"

    def acquire(self, inference_id: str, input_uri: str) -> Claim:
        """The claim for ``inference_id``, or ``ClaimedElsewhere``."""
        key = self.key(inference_id)
        body = {"owner": self.owner, "input": input_uri, "expires": time.time() + self.lease}
        for _ in range(3):  # the holder may release between our put and our read
            try:
                response = self.s3.put_object(Bucket=self.bucket, Key=key, IfNoneMatch="*",
                                              Body=json.dumps(body).encode(), ContentType="application/json")
                return Claim(self, key, response["ETag"], body)
            except Exception as exc:
                if _code(exc) not in LOST_RACE_CODES:
                    raise
            try:
                held = self.s3.get_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if _code(exc) in MISSING_CODES:
                    continue
                raise
            try:
                holder = json.loads(held["Body"].read())
                expires, owner = float(holder["expires"]), str(holder.get("owner", "?"))
            except (ValueError, KeyError, TypeError):
                expires, owner = 0.0, "?"  # unreadable: treat as expired
            if expires > time.time():
                raise ClaimedElsewhere(f"worker {owner} holds it for {expires - time.time():.0f} s more")
            try:  # its holder stopped renewing it: take it over, one taker only
                response = self.s3.put_object(Bucket=self.bucket, Key=key, IfMatch=held["ETag"],
                                              Body=json.dumps(body).encode(), ContentType="application/json")
            except Exception as exc:
                if _code(exc) in LOST_RACE_CODES or _code(exc) in MISSING_CODES:
                    continue
                raise
            logger.warning("took over the expired claim of worker %s on %s", owner, input_uri)
            return Claim(self, key, response["ETag"], body)
        raise ClaimedElsewhere("its claim changed hands while it was being taken")
