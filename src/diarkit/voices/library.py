"""Voice library storage: one JSON entry per voice, in a folder or under an ``s3://`` prefix.

An entry records the speaker-embedding model it was made with (the manifest's kind and
sha256), because embeddings of two models live in unrelated spaces: a library made with
another model is refused as a whole. An unreadable entry is reported by its name and
skipped, so one bad file never takes the other voices down.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from diarkit.errors import DiarkitError

logger = logging.getLogger(__name__)

ENTRY_SUFFIX = ".voice.json"
ENTRY_FORMAT = 1
#: names go into RTTM fields, SRT brackets and custom attributes: one token, no separators
_NAME = re.compile(r"^[^\W_][\w.'-]{0,63}$")
_DIARIZATION_LABEL = re.compile(r"^SPEAKER_\d+$", re.IGNORECASE)


class VoiceLibraryError(DiarkitError):
    """The voice library is missing, unreadable or made with another embedding model."""

    status = 400
    kind = "voice_library"

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        # the location is the user's own (not a spooled temporary file): servers show it too
        super().__init__(f"{path}: {message}" if path else message, hint=hint)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or _DIARIZATION_LABEL.match(name):
        raise VoiceLibraryError(
            f"invalid voice name {name!r}",
            hint="use one word of letters, digits, '.', '-', ''' or '_' (up to 64 characters, "
                 "not SPEAKER_nn), e.g. ALICE or Dr.Who")
    return name


@dataclass(frozen=True)
class EmbeddingModel:
    """Which speaker encoder made an embedding: the manifest's kind and the sha256 of its file(s)."""

    kind: str
    sha256: str

    @classmethod
    def of(cls, model_dir) -> "EmbeddingModel":
        artifact = model_dir.artifact("embedding")
        files = sorted((f.path, f.sha256) for f in artifact.files)
        if len(files) == 1:
            digest = files[0][1]
        else:  # several files: one digest over every (path, sha256)
            digest = hashlib.sha256("\n".join(f"{p} {s}" for p, s in files).encode()).hexdigest()
        return cls(kind=artifact.kind, sha256=digest)

    def __str__(self) -> str:
        return f"{self.kind} (sha256 {self.sha256[:12]})"


@dataclass
class VoiceEntry:
    name: str
    model: EmbeddingModel
    embeddings: np.ndarray  # (n, dim), unit rows: one per source
    seconds: float  # speech used, all sources together
    sources: list[dict[str, Any]] = field(default_factory=list)  # {"source", "seconds", ...}
    created: str = ""
    updated: str = ""

    @property
    def centroid(self) -> np.ndarray:
        """Mean of the sources' embeddings weighted by their seconds of speech, unit norm."""
        weights = np.array([max(float(s.get("seconds", 1.0)), 1e-3) for s in self.sources] or
                           [1.0] * len(self.embeddings))
        if len(weights) != len(self.embeddings):
            weights = np.ones(len(self.embeddings))
        mean = (self.embeddings * weights[:, None]).sum(axis=0)
        return mean / (np.linalg.norm(mean) + 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENTRY_FORMAT,
            "name": self.name,
            "embedding_model": asdict(self.model),
            "seconds": round(self.seconds, 3),
            "created": self.created,
            "updated": self.updated,
            "sources": self.sources,
            "centroid": [round(float(v), 7) for v in self.centroid],
            "embeddings": [[round(float(v), 7) for v in row] for row in self.embeddings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VoiceEntry":
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if int(data.get("format", 0)) != ENTRY_FORMAT:
            raise ValueError(f"unknown entry format {data.get('format')!r} (expected {ENTRY_FORMAT})")
        model = data["embedding_model"]
        embeddings = np.asarray(data["embeddings"], dtype=np.float32)
        if embeddings.ndim != 2 or not len(embeddings) or not np.all(np.isfinite(embeddings)):
            raise ValueError("embeddings must be a non-empty list of equal-length number lists")
        norms = np.linalg.norm(embeddings, axis=1)
        if np.any(norms < 1e-6):
            raise ValueError("an embedding is all zeros")
        name = data["name"]
        if not isinstance(name, str) or not _NAME.match(name) or _DIARIZATION_LABEL.match(name):
            raise ValueError(f"invalid voice name {name!r}")
        return cls(name=name, model=EmbeddingModel(str(model["kind"]), str(model["sha256"])),
                   embeddings=embeddings / norms[:, None], seconds=float(data["seconds"]),
                   sources=list(data.get("sources", [])), created=str(data.get("created", "")),
                   updated=str(data.get("updated", "")))


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------- storage


class LocalStore:
    """A folder of ``<name>.voice.json`` files."""

    def __init__(self, location: str):
        self.location = location
        self.root = Path(location).expanduser()

    def fingerprint(self) -> tuple:
        """What changes when an entry is added, removed or rewritten (cheap: no file is read)."""
        if not self.root.is_dir():
            raise VoiceLibraryError("voice library folder not found", path=self.location,
                                    hint="create it with: diarkit voices add LIB NAME CLIP...")
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                            for p in self.root.glob(f"*{ENTRY_SUFFIX}")))

    def names(self) -> list[str]:
        return [n[: -len(ENTRY_SUFFIX)] for n, *_ in self.fingerprint()]

    def read(self, name: str) -> bytes:
        return (self.root / f"{name}{ENTRY_SUFFIX}").read_bytes()

    def exists(self, name: str) -> bool:
        return (self.root / f"{name}{ENTRY_SUFFIX}").is_file()

    def write(self, name: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / f"{name}{ENTRY_SUFFIX}"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> None:
        (self.root / f"{name}{ENTRY_SUFFIX}").unlink()

    def describe(self, name: str) -> str:
        return str(self.root / f"{name}{ENTRY_SUFFIX}")


class S3Store:
    """``s3://bucket/prefix/``: entries are ``prefix/<name>.voice.json`` objects.

    The client comes from boto3's default chain (credentials, region, ``AWS_ENDPOINT_URL``).
    """

    def __init__(self, location: str, client=None):
        from diarkit.worker.s3events import as_prefix, parse_s3_uri

        self.location = location
        try:
            self.bucket, prefix = parse_s3_uri(location)
        except ValueError as exc:
            raise VoiceLibraryError(str(exc), path=location) from None
        self.prefix = as_prefix(prefix)
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}{ENTRY_SUFFIX}"

    def _call(self, what: str, function, **kwargs):
        try:
            return function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - botocore's errors: say what and where
            raise VoiceLibraryError(f"cannot {what}: {exc}", path=self.location,
                                    hint="check the bucket, prefix and credentials") from exc

    def fingerprint(self) -> tuple:
        items = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("list the voice library", lambda: list(paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/")))
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith(ENTRY_SUFFIX):
                    items.append((key[len(self.prefix):], obj.get("ETag", ""), obj.get("Size", 0)))
        return tuple(sorted(items))

    def names(self) -> list[str]:
        return [n[: -len(ENTRY_SUFFIX)] for n, *_ in self.fingerprint()]

    def read(self, name: str) -> bytes:
        response = self._call(f"read voice {name}", self.client.get_object, Bucket=self.bucket, Key=self._key(name))
        return response["Body"].read()

    def exists(self, name: str) -> bool:
        return any(n == name for n in self.names())

    def write(self, name: str, data: bytes) -> None:
        # an S3 PUT is atomic: readers see the old object or the new one
        self._call(f"write voice {name}", self.client.put_object, Bucket=self.bucket, Key=self._key(name),
                   Body=data, ContentType="application/json")

    def delete(self, name: str) -> None:
        self._call(f"remove voice {name}", self.client.delete_object, Bucket=self.bucket, Key=self._key(name))

    def describe(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"


def open_store(location: str, *, s3_client=None):
    if not isinstance(location, str) or not location.strip():
        raise VoiceLibraryError("the voice library location is empty", hint="a folder or s3://bucket/prefix/")
    if location.startswith("s3://"):
        return S3Store(location, client=s3_client)
    if "://" in location:
        raise VoiceLibraryError("unsupported voice library location", path=location,
                                hint="use a folder or s3://bucket/prefix/")
    return LocalStore(location)


# --------------------------------------------------------------------------- reading


@dataclass
class LoadedLibrary:
    """The usable voices of a library, and what was wrong with the others."""

    location: str
    voices: list[VoiceEntry]
    problems: list[str] = field(default_factory=list)  # one line per unreadable entry

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.voices]

    def centroids(self) -> np.ndarray:
        return np.stack([v.centroid for v in self.voices]) if self.voices else np.zeros((0, 0), np.float32)


def read_entry(store, name: str) -> VoiceEntry:
    data = json.loads(store.read(name).decode("utf-8"))
    entry = VoiceEntry.from_dict(data)
    if entry.name != name:
        raise ValueError(f"the entry is named {entry.name!r}, its file {name!r}")
    return entry


def load_library(location: str, model: EmbeddingModel | None, *, store=None) -> LoadedLibrary:
    """Every entry of the library; unreadable ones become ``problems``; another model: an error."""
    store = store or open_store(location)
    voices, problems = [], []
    for name in store.names():
        try:
            voices.append(read_entry(store, name))
        except VoiceLibraryError:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, DiarkitError) as exc:
            message = exc.message if isinstance(exc, DiarkitError) else str(exc)
            problems.append(f"voice {name!r} ({store.describe(name)}) is corrupt and was skipped: {message}")
            logger.warning("%s: %s", location, problems[-1])
    if model is not None:
        foreign = [v for v in voices if v.model != model]
        if foreign:
            made = sorted({str(v.model) for v in foreign})
            raise VoiceLibraryError(
                f"voice library was made with another speaker-embedding model ({', '.join(made)}; "
                f"voices {', '.join(v.name for v in foreign)}), this model directory's is {model}",
                path=location, hint="enroll the voices again with this model directory, or use the model "
                                    "directory the library was made with")
    return LoadedLibrary(location=location, voices=voices, problems=problems)


class LibraryCache:
    """Loaded libraries by location, for one pipeline: a request re-reads only what changed.

    Each use costs one listing (a folder scan, or one S3 LIST) to see whether an entry was
    added, removed or rewritten; entries are read again only then. Not process-global: each
    pipeline (one per server worker thread) has its own, behind a lock.
    """

    def __init__(self, model: EmbeddingModel, *, s3_client=None):
        self.model = model
        self.s3_client = s3_client
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple, LoadedLibrary]] = {}
        self.reads = 0  # full reads done (for tests and logs)

    def get(self, location: str) -> LoadedLibrary:
        with self._lock:
            store = open_store(location, s3_client=self.s3_client)
            if isinstance(store, S3Store):
                self.s3_client = store.client  # one client for every S3 library of this pipeline
            fingerprint = store.fingerprint()
            cached = self._cache.get(location)
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
            if not fingerprint:
                raise VoiceLibraryError("the voice library has no voices", path=location,
                                        hint="enroll some with: diarkit voices add LIB NAME CLIP...")
            library = load_library(location, self.model, store=store)
            self.reads += 1
            logger.info("voice library %s: %d voices loaded%s", location, len(library.voices),
                        f", {len(library.problems)} corrupt" if library.problems else "")
            self._cache[location] = (fingerprint, library)
            return library
