"""Watch mode (``--watch DIR``): the same for a folder, no AWS at all. ``DIR/input/`` ->
``DIR/output/<stem>.<fmt>`` (inputs then move to ``DIR/done/``), failures to
``DIR/failed/<name>`` + ``<name>.error.json``. A file being processed sits in
``DIR/.processing/<worker>/``, whose lock dies with its worker: a restarted worker puts
files left there by a killed one back into ``input/``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from diarkit.errors import DiarkitError
from diarkit.request import RequestOptions
from diarkit.worker.common import Shutdown, classify, error_document
from diarkit.worker.processors import Processor, TransientError
from diarkit.worker.s3events import content_type_for
from diarkit.writers import atomic_write_text, write_outputs

logger = logging.getLogger(__name__)

@dataclass
class FolderSettings:
    root: Path
    formats: list[str] = field(default_factory=lambda: ["json"])
    poll_interval: float = 1.0
    settle: float = 2.0  # a file must be this old (mtime) before it is taken: copies in progress
    retry_delay: float = 5.0
    options: RequestOptions = field(default_factory=RequestOptions)


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
                                    options=self.settings.options)
        except TransientError as exc:
            logger.error("%s: %s; retrying in %.0f s", name, exc, self.settings.retry_delay)
            self._move_back(claimed)
            time.sleep(self.settings.retry_delay)
            return "retry"
        except Exception as exc:  # noqa: BLE001 - the file failed: report it and go on
            if not isinstance(exc, DiarkitError):
                logger.exception("unexpected failure on %s", name)
            kind, message, status = classify(exc, claimed, name)
            atomic_write_text(self.failed / f"{name}.error.json",
                              error_document(kind, message, status, input=name))
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
