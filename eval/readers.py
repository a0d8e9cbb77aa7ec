"""Readers for reference and hypothesis annotations.

Every reader returns ``{file_id: Document}`` so that formats holding several recordings
(RTTM, STM, CSV with a uri column) and one-recording formats (JSON, text) are used alike.
A malformed input raises :class:`ReaderError` naming ``file:line`` and the reason: a
silently skipped line would silently change the score.

Formats
-------
RTTM      ``SPEAKER uri channel start duration <NA> <NA> speaker <NA> <NA>``; other types ignored.
STM       ``uri channel speaker start end [<label>] words...``; ``;;`` lines are comments;
          segments whose words are ``ignore_time_segment_in_scoring`` or whose speaker is
          ``inter_segment_gap`` are skipped (NIST convention).
UEM       ``uri channel start end``.
CSV/TSV   columns start, end, speaker [, text]; header optional (names: start/begin,
          end/stop or duration, speaker/label, text/words/transcript, uri/file_id).
diarkit   JSON of ``TranscriptResult.to_dict()``: ``diarization`` turns, ``segments[].words``.
whisperx  JSON ``{"segments": [{start, end, text, speaker, words: [{word, start, end, speaker}]}]}``.
text      ``*.txt``: one ``speaker<TAB>text`` per line (no times: cpWER only, no DER/tcpWER).
groups    two columns: file id, group name (tab, comma or whitespace separated).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

# Which source wins when several files describe the same recording (lower = preferred).
TURN_PRIORITY = {"rttm": 0, "diarkit": 1, "whisperx": 2, "csv": 3, "stm": 4}
TEXT_PRIORITY = {"stm": 0, "diarkit": 1, "whisperx": 2, "text": 3, "csv": 4}
ANNOTATION_SUFFIXES = {".rttm", ".stm", ".json", ".csv", ".tsv", ".txt"}
UEM_SUFFIX = ".uem"


class ReaderError(ValueError):
    """A malformed input file; the message names ``file:line: reason``."""

    def __init__(self, path: str | Path, line: int | str | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


@dataclass
class Turn:
    start: float
    end: float
    speaker: str


@dataclass
class TextSegment:
    """Words of one speaker; times are None for untimed sources (text-per-speaker files)."""

    speaker: str
    words: str
    start: float | None = None
    end: float | None = None


@dataclass
class Document:
    """Everything known about one recording: turns (None = source has no diarization),
    text (None = source has no words), UEM and where it came from."""

    uri: str
    turns: list[Turn] | None = None
    text: list[TextSegment] | None = None
    uem: list[tuple[float, float]] | None = None
    duration: float | None = None
    kind: str = ""
    sources: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def has_timed_text(self) -> bool:
        return self.text is not None and all(s.start is not None and s.end is not None for s in self.text)


# ----------------------------------------------------------------------------- helpers


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReaderError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ReaderError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line


def _float(value: str, path: Path, line: int, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ReaderError(path, line, f"{name} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ReaderError(path, line, f"{name} is not finite: {value!r}")
    return number


def _check_times(start: float, end: float, path: Path, line: int | str) -> None:
    if start < 0:
        raise ReaderError(path, line, f"negative start time {start}")
    if end < start:
        raise ReaderError(path, line, f"end {end} before start {start}")


def _doc(docs: dict[str, Document], uri: str, kind: str, path: Path, turns=True, text=False) -> Document:
    if uri not in docs:
        docs[uri] = Document(uri=uri, turns=[] if turns else None, text=[] if text else None,
                             kind=kind, sources=[str(path)])
    return docs[uri]


# ----------------------------------------------------------------------------- line formats


def read_rttm(path: str | Path) -> dict[str, Document]:
    """RTTM: only SPEAKER lines; zero-length turns are dropped (they score nothing)."""
    path = Path(path)
    docs: dict[str, Document] = {}
    for number, line in _read_lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#") or fields[0].startswith(";;"):
            continue
        if fields[0] != "SPEAKER":
            log.debug("%s:%d: ignoring RTTM type %s", path, number, fields[0])
            continue
        if len(fields) < 8:
            raise ReaderError(path, number, "expected at least 8 fields "
                              f"(SPEAKER uri channel start duration <NA> <NA> speaker), got {len(fields)}")
        uri, speaker = fields[1], fields[7]
        start = _float(fields[3], path, number, "start")
        duration = _float(fields[4], path, number, "duration")
        if duration < 0:
            raise ReaderError(path, number, f"negative duration {duration}")
        _check_times(start, start + duration, path, number)
        if speaker in ("<NA>", ""):
            raise ReaderError(path, number, "missing speaker label")
        doc = _doc(docs, uri, "rttm", path)
        if duration > 0:
            doc.turns.append(Turn(start, start + duration, speaker))
    return docs


def read_stm(path: str | Path) -> dict[str, Document]:
    """STM: each segment is a turn (so an STM can be a diarization reference) and text."""
    path = Path(path)
    docs: dict[str, Document] = {}
    for number, line in _read_lines(path):
        if not line.strip() or line.lstrip().startswith(";;"):
            continue
        fields = line.split()
        if len(fields) < 5:
            raise ReaderError(path, number, "expected at least 5 fields "
                              f"(uri channel speaker start end words...), got {len(fields)}")
        uri, _channel, speaker = fields[0], fields[1], fields[2]
        start = _float(fields[3], path, number, "start")
        end = _float(fields[4], path, number, "end")
        _check_times(start, end, path, number)
        words = fields[5:]
        if words and words[0].startswith("<") and words[0].endswith(">"):
            words = words[1:]  # optional <o,f0,male> label field
        doc = _doc(docs, uri, "stm", path, turns=True, text=True)
        if speaker == "inter_segment_gap" or words == ["ignore_time_segment_in_scoring"]:
            continue
        if end > start:
            doc.turns.append(Turn(start, end, speaker))
        doc.text.append(TextSegment(speaker, " ".join(words), start, end))
    return docs


def read_uem(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """UEM: scored regions per uri."""
    path = Path(path)
    uem: dict[str, list[tuple[float, float]]] = {}
    for number, line in _read_lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#") or fields[0].startswith(";;"):
            continue
        if len(fields) != 4:
            raise ReaderError(path, number, f"expected 4 fields (uri channel start end), got {len(fields)}")
        start = _float(fields[2], path, number, "start")
        end = _float(fields[3], path, number, "end")
        _check_times(start, end, path, number)
        uem.setdefault(fields[0], []).append((start, end))
    return uem


def read_speaker_text(path: str | Path) -> dict[str, Document]:
    """Text-per-speaker file: ``speaker<TAB>text`` lines, in speaking order, no times."""
    path = Path(path)
    doc = Document(uri=path.stem, turns=None, text=[], kind="text", sources=[str(path)])
    for number, line in _read_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" not in line:
            raise ReaderError(path, number, "expected 'speaker<TAB>text'")
        speaker, words = line.split("\t", 1)
        if not speaker.strip():
            raise ReaderError(path, number, "missing speaker label")
        doc.text.append(TextSegment(speaker.strip(), words.strip()))
    return {doc.uri: doc}


def read_groups(path: str | Path) -> dict[str, str]:
    """Two columns: file id, group (tab, comma or whitespace separated; header optional)."""
    path = Path(path)
    groups: dict[str, str] = {}
    for number, line in _read_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        sep = "\t" if "\t" in line else ("," if "," in line else None)
        fields = [f.strip() for f in line.split(sep)]
        fields = [f for f in fields if f]
        if len(fields) != 2:
            raise ReaderError(path, number, f"expected 2 columns (file id, group), got {len(fields)}")
        if not groups and fields[0].lower() in {"file", "file_id", "uri", "id"} \
                and fields[1].lower() in {"group", "genre", "category"}:
            continue  # header
        groups[fields[0]] = fields[1]
    return groups


# ----------------------------------------------------------------------------- CSV / TSV

_COLUMNS = {
    "start": {"start", "begin", "start_time", "tbeg", "onset"},
    "end": {"end", "stop", "end_time", "tend", "offset"},
    "duration": {"duration", "dur", "tdur"},
    "speaker": {"speaker", "label", "spk", "speaker_id"},
    "text": {"text", "words", "transcript", "transcription"},
    "uri": {"uri", "file", "file_id", "fileid", "session_id", "recording"},
}


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def read_csv(path: str | Path) -> dict[str, Document]:
    """CSV/TSV turns: ``start,end,speaker[,text]`` (header optional; named columns any order)."""
    path = Path(path)
    lines = list(_read_lines(path))
    content = [(n, l) for n, l in lines if l.strip() and not l.lstrip().startswith("#")]
    if not content:
        return {path.stem: Document(uri=path.stem, turns=[], kind="csv", sources=[str(path)])}
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        first = content[0][1]
        delimiter = max([",", "\t", ";"], key=first.count)
    numbers = [n for n, _ in content]
    rows = [next(csv.reader([l], delimiter=delimiter)) for _, l in content]  # one row per line: exact line numbers
    header = rows[0]
    index: dict[str, int] = {}
    has_header = bool(header) and not _is_number(header[0].strip())
    if has_header:
        names = [h.strip().lower() for h in header]
        for key, aliases in _COLUMNS.items():
            for i, name in enumerate(names):
                if name in aliases:
                    index[key] = i
                    break
        missing = [k for k in ("start", "speaker") if k not in index]
        if "end" not in index and "duration" not in index:
            missing.append("end")
        if missing:
            raise ReaderError(path, numbers[0], f"header lacks column(s) {', '.join(missing)} "
                              f"(got {', '.join(header)})")
        body = list(zip(numbers[1:], rows[1:]))
    else:
        index = {"start": 0, "end": 1, "speaker": 2}
        body = list(zip(numbers, rows))
    docs: dict[str, Document] = {}
    for number, row in body:
        row = [c.strip() for c in row]
        needed = max(i for k, i in index.items() if k != "text")
        if len(row) <= needed:
            raise ReaderError(path, number, f"expected at least {needed + 1} columns, got {len(row)}")
        start = _float(row[index["start"]], path, number, "start")
        if "end" in index:
            end = _float(row[index["end"]], path, number, "end")
        else:
            end = start + _float(row[index["duration"]], path, number, "duration")
        _check_times(start, end, path, number)
        speaker = row[index["speaker"]]
        if not speaker:
            raise ReaderError(path, number, "missing speaker label")
        uri = row[index["uri"]] if "uri" in index else path.stem
        if not has_header:
            words = " ".join(row[3:])  # headerless: everything after speaker is text
        else:
            words = row[index["text"]] if "text" in index and index["text"] < len(row) else ""
        doc = _doc(docs, uri, "csv", path, turns=True, text="text" in index)
        if end > start:
            doc.turns.append(Turn(start, end, speaker))
        if words:
            if doc.text is None:
                doc.text = []
            doc.text.append(TextSegment(speaker, words, start, end))
    return docs


# ----------------------------------------------------------------------------- JSON


def _get(obj: Any, key: str, path: Path, where: str, kinds=(int, float)) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ReaderError(path, where, f"missing {key!r}")
    value = obj[key]
    if kinds and not isinstance(value, kinds) or isinstance(value, bool):
        raise ReaderError(path, where, f"{key!r} has wrong type {type(value).__name__}")
    return value


def _json_time(obj: dict, key: str, path: Path, where: str) -> float:
    value = float(_get(obj, key, path, where))
    if not math.isfinite(value):
        raise ReaderError(path, where, f"{key!r} is not finite")
    return value


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ReaderError(path, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise ReaderError(path, None, f"not UTF-8 text ({exc.reason})") from None


def _words_from_segments(segments: list, path: Path) -> list[TextSegment]:
    """Word-level text (each word its own timed segment) when words carry times, else segment text."""
    text: list[TextSegment] = []
    for i, seg in enumerate(segments):
        where = f"segments[{i}]"
        if not isinstance(seg, dict):
            raise ReaderError(path, where, "not an object")
        seg_start = _json_time(seg, "start", path, where)
        seg_end = _json_time(seg, "end", path, where)
        _check_times(seg_start, seg_end, path, where)
        seg_speaker = seg.get("speaker") or "UNKNOWN"
        words = seg.get("words") or []
        if not words:
            if str(seg.get("text", "")).strip():
                text.append(TextSegment(seg_speaker, str(seg["text"]).strip(), seg_start, seg_end))
            continue
        for j, w in enumerate(words):
            wwhere = f"{where}.words[{j}]"
            token = str(_get(w, "word", path, wwhere, kinds=(str,))).strip()
            # whisperx leaves numerals unaligned (no times): fall back to the segment's span
            start = float(w["start"]) if isinstance(w.get("start"), (int, float)) else seg_start
            end = float(w["end"]) if isinstance(w.get("end"), (int, float)) else seg_end
            if end < start:
                raise ReaderError(path, wwhere, f"end {end} before start {start}")
            if token:
                text.append(TextSegment(w.get("speaker") or seg_speaker, token, start, end))
    return text


def read_json(path: str | Path) -> dict[str, Document]:
    """diarkit JSON (has ``diarization``) or whisperx JSON (has ``segments``); id = file stem."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or ("diarization" not in data and "segments" not in data):
        raise ReaderError(path, None, "unsupported JSON: expected diarkit output (with 'diarization') "
                          "or whisperx output (with 'segments')")
    segments = data.get("segments") or []
    if not isinstance(segments, list):
        raise ReaderError(path, "segments", "not a list")
    if "diarization" in data:
        version = str(data.get("version", ""))
        if version.split(".")[0] != "1":
            raise ReaderError(path, "version", f"unsupported diarkit JSON version {version!r} (expected 1.x)")
        turns_data = data["diarization"]
        if not isinstance(turns_data, list):
            raise ReaderError(path, "diarization", "not a list")
        turns = []
        for i, t in enumerate(turns_data):
            where = f"diarization[{i}]"
            start, end = _json_time(t, "start", path, where), _json_time(t, "end", path, where)
            speaker = _get(t, "speaker", path, where, kinds=(str,))
            _check_times(start, end, path, where)
            if end > start:
                turns.append(Turn(start, end, speaker))
        kind = "diarkit"
    else:
        turns = []
        for i, seg in enumerate(segments):
            where = f"segments[{i}]"
            start, end = _json_time(seg, "start", path, where), _json_time(seg, "end", path, where)
            _check_times(start, end, path, where)
            if seg.get("speaker") and end > start:
                turns.append(Turn(start, end, str(seg["speaker"])))
        if segments and not turns:
            log.warning("%s: whisperx JSON without speaker labels: no diarization turns", path)
        kind = "whisperx"
    doc = Document(uri=path.stem, turns=turns, text=_words_from_segments(segments, path), kind=kind,
                   sources=[str(path)])
    if isinstance(data.get("duration"), (int, float)):
        doc.duration = float(data["duration"])
    if isinstance(data.get("timings"), dict):
        doc.timings = {k: float(v) for k, v in data["timings"].items() if isinstance(v, (int, float))}
    return {doc.uri: doc}


# ----------------------------------------------------------------------------- dispatch

READERS = {".rttm": read_rttm, ".stm": read_stm, ".json": read_json, ".csv": read_csv,
           ".tsv": read_csv, ".txt": read_speaker_text}


def read_file(path: str | Path) -> dict[str, Document]:
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ReaderError(path, None, f"unknown annotation format {path.suffix!r} "
                          f"(known: {', '.join(sorted(READERS))})")
    return reader(path)


def merge_documents(parts: list[Document]) -> Document:
    """Combine several sources of one recording: best turn source + best text source."""
    uri = parts[0].uri
    merged = Document(uri=uri, sources=[s for p in parts for s in p.sources])
    with_turns = sorted((p for p in parts if p.turns is not None), key=lambda p: TURN_PRIORITY.get(p.kind, 9))
    with_text = sorted((p for p in parts if p.text is not None), key=lambda p: TEXT_PRIORITY.get(p.kind, 9))
    for chosen in (with_turns, with_text):
        if len(chosen) > 1 and chosen[0].kind == chosen[1].kind:
            raise ReaderError(chosen[1].sources[0], None, f"second {chosen[0].kind} annotation of {uri!r} "
                              f"(also in {chosen[0].sources[0]}); keep one")
    if with_turns:
        merged.turns, merged.kind = with_turns[0].turns, with_turns[0].kind
    if with_text:
        merged.text = with_text[0].text
    for p in parts:
        merged.duration = merged.duration if merged.duration is not None else p.duration
        merged.timings = merged.timings or p.timings
        if p.uem is not None:
            merged.uem = (merged.uem or []) + p.uem
    return merged


def load_documents(path: str | Path) -> dict[str, Document]:
    """A file, or every annotation file directly inside a folder, keyed by file id.

    ``*.uem`` files in a folder (or a ``.uem`` given directly is rejected: pass it as --uem)
    become the ``uem`` of the documents they name.
    """
    path = Path(path)
    if not path.exists():
        raise ReaderError(path, None, "no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES)
        uem_files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == UEM_SUFFIX)
    else:
        files, uem_files = [path], []
    parts: dict[str, list[Document]] = {}
    for f in files:
        for uri, doc in read_file(f).items():
            parts.setdefault(uri, []).append(doc)
    docs = {uri: merge_documents(p) for uri, p in parts.items()}
    for f in uem_files:
        for uri, regions in read_uem(f).items():
            if uri in docs:
                docs[uri].uem = (docs[uri].uem or []) + regions
            else:
                log.debug("%s: UEM for %r which has no annotation", f, uri)
    return docs
