"""Every output format, rendered from one TranscriptResult.

``render`` gives the text (the HTTP server answers with it); ``write_outputs`` writes
files through a temporary name and a rename, so a reader never sees half a file.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from diarkit import dialogue
from diarkit.errors import OptionsError, OutputError
from diarkit.result import TranscriptResult
from diarkit.subtitles import track_for
from diarkit.ttml import to_ttml


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _label(speaker: str | None) -> str:
    return speaker if speaker is not None else "UNKNOWN"


def to_json(result: TranscriptResult) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"


def to_srt(result: TranscriptResult) -> str:
    """Subtitle events (diarkit.subtitles rules). SRT has no markup for speakers, so the
    speaker's name starts the text where the speaker changes (``DIANE: ...``), counted in the
    line length; two speakers in one event are two hyphenated lines, each with its name."""
    track = track_for(result, speaker_labels=True)
    blocks = []
    for index, event in enumerate(track.events, 1):
        start, end = event.seconds(track.rate)
        text = "\n".join(event.lines)
        blocks.append(f"{index}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(result: TranscriptResult) -> str:
    track = track_for(result)
    lines = ["WEBVTT", ""]
    for event in track.events:
        start, end = event.seconds(track.rate)
        lines.append(f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}")
        # WebVTT voice span per line: players show the speaker, and it survives as data
        for text, speaker in zip(event.lines, event.line_speakers()):
            lines.append(f"<v {_label(speaker)}>{html.escape(text, quote=False)}</v>")
        lines.append("")
    return "\n".join(lines)


def to_rttm(result: TranscriptResult) -> str:
    uri = "_".join(result.uri.split()) or "audio"
    return "".join(
        f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
        for t in result.turns if t.end > t.start
    )


def to_txt(result: TranscriptResult) -> str:
    return "".join(f"{_label(seg.speaker)}: {seg.text}\n" for seg in result.segments)


#: every format; xlsx renders bytes, the others text
RENDERERS: dict[str, Callable[[TranscriptResult], str | bytes]] = {
    "json": to_json, "srt": to_srt, "vtt": to_vtt, "rttm": to_rttm, "txt": to_txt,
    "ttml": to_ttml, "csv": dialogue.to_csv, "xlsx": dialogue.to_xlsx,
}
CONTENT_TYPES = {
    "json": "application/json", "srt": "application/x-subrip", "vtt": "text/vtt",
    "rttm": "text/x-rttm", "txt": "text/plain",
    "ttml": "application/ttml+xml", "csv": "text/csv", "xlsx": dialogue.XLSX_CONTENT_TYPE,
}


def parse_formats(value: str | list[str]) -> list[str]:
    names = value.split(",") if isinstance(value, str) else list(value)
    formats = [n.strip().lower() for n in names if n.strip()]
    unknown = [f for f in formats if f not in RENDERERS]
    if unknown or not formats:
        raise OptionsError(f"unknown output format {', '.join(unknown) or '(none)'}",
                           hint=f"choose from {','.join(RENDERERS)}")
    return formats


def render(result: TranscriptResult, fmt: str) -> str | bytes:
    return RENDERERS[parse_formats(fmt)[0]](result)


def render_bytes(result: TranscriptResult, fmt: str) -> bytes:
    """The body of an answer in ``fmt`` (text formats as UTF-8)."""
    rendered = render(result, fmt)
    return rendered if isinstance(rendered, bytes) else rendered.encode("utf-8")


def file_mode() -> int:
    """The mode a new file gets from the process umask (mkstemp alone gives 0600)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the classic way
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short temporary name: the final name may already be near the 255-byte limit
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(text if isinstance(text, bytes) else text.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(result: TranscriptResult, out_dir: str | os.PathLike, formats: list[str] | str,
                  stem: str | None = None) -> list[Path]:
    """Every format, or none: when one cannot be written, those already written are removed."""
    out_dir = Path(out_dir)
    stem = stem or result.uri or "audio"
    written = []
    for fmt in parse_formats(formats):
        target = out_dir / f"{stem}.{fmt}"
        try:
            atomic_write_text(target, RENDERERS[fmt](result))
        except OSError as exc:
            for path in written:
                path.unlink(missing_ok=True)
            raise OutputError(f"cannot write {target.name}: {exc.strerror or exc}", path=str(out_dir),
                              hint="check that the output folder is writable and has free space") from exc
        written.append(target)
    return written


def check_output_dir(out_dir: str | os.PathLike) -> None:
    """Fail before any work when results cannot be written there (read-only, not a folder, full)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".diarkit-check.", dir=out_dir) as probe:
            probe.write(b"x")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise OutputError(f"cannot write results here: {exc.strerror or exc}", path=str(out_dir),
                          hint="choose a writable output folder with free space") from None
