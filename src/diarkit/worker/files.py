"""File names and moves for the watch folder: nothing is ever replaced, any name works.

Names come from users: they may not be valid UTF-8 or may be near the 255-byte limit of
a file name, so every name derived from one (outputs, failure reports) is made safe
first. Moves and result files use hard links, which fail instead of replacing an
existing name, so two files called ``dup.wav`` (or ``a.wav`` and ``a.mp3``) keep both
results under distinct names, also with several workers on one folder.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from diarkit.errors import OutputError
from diarkit.result import TranscriptResult
from diarkit.writers import RENDERERS, file_mode

logger = logging.getLogger(__name__)

NAME_MAX = 255
#: bytes kept free after a stem for ``.<counter>`` and the longest suffix (``.error.json``)
RESERVE = 32


def display_name(name: str) -> str:
    """The name as text: bytes that are not UTF-8 become U+FFFD (printable, JSON-safe)."""
    return os.fsencode(name).decode("utf-8", "replace")


def safe_stem(stem: str, limit: int = NAME_MAX - RESERVE) -> str:
    """``stem`` as valid UTF-8 of at most ``limit`` bytes; a changed stem ends with a short hash."""
    raw = os.fsencode(stem)
    text = raw.decode("utf-8", "replace").replace("\ufffd", "_").replace("/", "_")
    if text.encode("utf-8") == raw and len(raw) <= limit and text not in ("", ".", ".."):
        return text
    digest = hashlib.sha1(raw).hexdigest()[:8]
    keep = text.encode("utf-8")[: limit - 9].decode("utf-8", "ignore")  # never half a character
    return f"{keep}-{digest}"


def _candidates(name: str) -> Iterator[str]:
    """``name``, then ``stem.1.ext``, ``stem.2.ext``... all valid file names."""
    path = Path(name)
    suffix = path.suffix if len(os.fsencode(path.suffix)) <= 16 else ""
    stem = name[: len(name) - len(suffix)] if suffix else name
    if len(os.fsencode(name)) <= NAME_MAX:
        yield name
    short = safe_stem(stem, NAME_MAX - RESERVE) if len(os.fsencode(name)) > NAME_MAX - RESERVE else stem
    counter = 1
    while True:
        yield f"{short}.{counter}{suffix}"
        counter += 1


def move_unique(source: Path, folder: Path, name: str | None = None) -> Path:
    """Move ``source`` into ``folder`` under ``name`` or, when taken, ``stem.N.ext``; never replaces."""
    for candidate in _candidates(name or source.name):
        target = folder / candidate
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            if os.path.lexists(target):  # another filesystem: no atomic no-replace move there
                continue
            os.rename(source, target)
            return target
        os.unlink(source)
        return target
    raise AssertionError("unreachable")


def _place(tmp: Path, target: Path) -> None:
    """Hard-link ``tmp`` to ``target``, failing when it exists; a copy where links are not supported."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        with open(tmp, "rb") as source, open(target, "xb") as out:  # "x": never replaces
            shutil.copyfileobj(source, out)
        os.chmod(target, file_mode())


def write_results(result: TranscriptResult, folder: Path, stem: str, formats: list[str]) -> list[Path]:
    """Every format under one free stem (``stem``, ``stem.1``...), complete or not at all.

    Each text is written to a temporary file, then linked to its final name; a taken name
    moves all formats on to the next stem. A failure (full or read-only folder) removes
    what was written for this result and raises ``OutputError``.
    """
    stem = safe_stem(stem)
    temps: dict[str, Path] = {}
    linked: list[Path] = []
    try:
        for fmt in formats:
            fd, tmp = tempfile.mkstemp(prefix=".diarkit-", suffix=f".{fmt}.tmp", dir=folder)
            temps[fmt] = Path(tmp)
            os.fchmod(fd, file_mode())
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(RENDERERS[fmt](result))
        counter = 0
        while True:
            candidate = stem if counter == 0 else f"{stem}.{counter}"
            try:
                for fmt, tmp in temps.items():
                    target = folder / f"{candidate}.{fmt}"
                    _place(tmp, target)
                    linked.append(target)
                return linked
            except FileExistsError:
                for path in linked:
                    path.unlink(missing_ok=True)
                linked.clear()
                counter += 1
    except OSError as exc:
        for path in linked:
            path.unlink(missing_ok=True)
        raise OutputError(f"cannot write the results: {exc.strerror or exc}", path=str(folder),
                          hint="check that the output folder is writable and has free space") from exc
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
