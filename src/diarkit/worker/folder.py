"""Watch mode (``--watch DIR``): the same for a folder, no AWS at all. ``DIR/input/`` ->
``DIR/output/<stem>.<fmt>`` (inputs then move to ``DIR/done/``), failures to
``DIR/failed/<name>`` + ``<name>.error.json``. A file being processed sits in
``DIR/.processing/<worker>/``, whose lock dies with its worker: a restarted worker puts
files left there by a killed one back into ``input/``.

No input can stop the worker: a file whose name is not UTF-8 or very long, a symbolic
link, or a failure while reporting ends in ``failed/`` and the worker goes on. Nothing is
replaced: ``done/``, ``failed/`` and ``output/`` names get ``.N`` when taken
(``diarkit.worker.files``). The output folders are checked for writing at start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from diarkit.errors import DiarkitError, MediaError, OutputError
from diarkit.request import RequestOptions
from diarkit.worker.common import Shutdown, classify, error_document
from diarkit.worker.files import display_name, move_unique, safe_stem, write_results
from diarkit.worker.processors import Processor, TransientError
from diarkit.worker.s3events import content_type_for
from diarkit.writers import atomic_write_text, check_output_dir

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
        self._skipped: set[str] = set()  # names already logged as skipped

    def start(self) -> None:
        for folder in (self.input, self.output, self.failed, self.done, self.processing):
            folder.mkdir(parents=True, exist_ok=True)
        for folder in (self.output, self.failed, self.done):
            check_output_dir(folder)  # read-only or full: say so now, not after a transcription
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
                if os.path.lexists(claimed):
                    self._move_back(claimed)
                    logger.warning("stopping: %s is back in input/", display_name(claimed.name))
                raise
            except Exception:  # noqa: BLE001 - even reporting failed: the file must not come back
                logger.exception("could not finish %s; it stays in %s", display_name(claimed.name), claimed.parent)
        return taken

    def next_ready(self) -> Path | None:
        newest = time.time() - self.settings.settle
        ready = []
        for path in self.input.iterdir():
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if path.name.startswith("."):
                self._skip(path, "hidden names are taken as copies in progress; rename it when complete")
                continue
            if stat.S_ISDIR(info.st_mode):
                self._skip(path, "folders are not watched; put the files themselves into input/")
                continue
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                self._skip(path, "not a regular file")
                continue
            mtime = info.st_mtime  # a link is taken as it is, and refused in process()
            if mtime <= newest:
                ready.append((mtime, path.name, path))
        return min(ready)[2] if ready else None

    def _skip(self, path: Path, why: str) -> None:
        if path.name not in self._skipped:
            self._skipped.add(path.name)
            logger.info("skipping %s: %s", display_name(str(path)), why)

    def claim(self, path: Path) -> Path | None:
        target = self.claims / path.name
        try:
            os.rename(path, target)  # atomic: of two workers, one wins
        except FileNotFoundError:
            return None
        return target

    def process(self, claimed: Path) -> str:
        name = claimed.name
        shown = display_name(name)
        logger.info("processing %s", display_name(str(self.input / name)))
        try:
            self._check_regular(claimed, shown)
            result = self.processor(claimed, uri=display_name(Path(name).stem), content_type=content_type_for(name),
                                    options=self.settings.options)
        except TransientError as exc:
            logger.error("%s: %s; retrying in %.0f s", shown, exc, self.settings.retry_delay)
            self._move_back(claimed)
            time.sleep(self.settings.retry_delay)
            return "retry"
        except Exception as exc:  # noqa: BLE001 - the file failed: report it and go on
            if not isinstance(exc, DiarkitError):
                logger.exception("unexpected failure on %s", shown)
            return self._fail(claimed, shown, exc)
        try:
            written = write_results(result, self.output, Path(name).stem, self.settings.formats)
        except OutputError as exc:  # the folder's fault, not the file's: keep the input, retry later
            logger.error("%s: %s; %s is back in input/, retrying in %.0f s", shown, exc, shown,
                         self.settings.retry_delay)
            self._move_back(claimed)
            time.sleep(self.settings.retry_delay)
            return "retry"
        stored = move_unique(claimed, self.done)
        logger.info("completed %s -> %s (%d speakers; input now done/%s)", shown,
                    ", ".join(p.name for p in written), result.num_speakers, display_name(stored.name))
        return "completed"

    def _check_regular(self, claimed: Path, shown: str) -> None:
        """Symbolic links are refused: one could make the worker read any file of the machine."""
        if not claimed.is_symlink():
            return
        target = os.readlink(claimed)
        inside = Path(os.path.normpath(self.input / target)).is_relative_to(self.input)
        where = "a file in input/" if inside else "a path outside input/"
        raise MediaError(f"is a symbolic link to {where}; links are not followed", path=str(claimed),
                         hint="copy or move the file itself into input/")

    def _fail(self, claimed: Path, shown: str, exc: Exception) -> str:
        """Move the input to failed/ (under a free name), then write its report next to it."""
        kind, message, status = classify(exc, claimed, shown)
        message = message.encode("utf-8", "replace").decode("utf-8")  # names that are not UTF-8
        stored = move_unique(claimed, self.failed)
        stored_name = stored.name
        report = self.failed / f"{stored_name}.error.json"
        if display_name(stored_name) != stored_name or len(os.fsencode(report.name)) > 255:
            report = self.failed / f"{safe_stem(stored_name)}.error.json"
        atomic_write_text(report, error_document(kind, message, status, input=shown,
                                                 stored_as=display_name(stored_name)))
        logger.error("failed %s: %s (report: failed/%s)", shown, message, report.name)
        return "failed"

    def _move_back(self, path: Path) -> None:
        """Back into input/; a newer drop with the same name is never replaced."""
        move_unique(path, self.input)
