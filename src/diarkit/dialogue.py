"""The dialogue list (as-broadcast script) that dubbing teams cast and adapt from.

One row per speaker turn: In-TC, Out-TC (SMPTE timecode at the media's frame rate,
drop-frame where it applies), Source (the speaker label, in capitals), Dialogue. A turn
is a speaker's words with pauses under ``merge_pause`` merged. Speech that overlaps
another speaker and got no words of its own (words take one speaker each) is kept as its
own row, so the casting director sees that two people talk at once. The XLSX adds a
sheet per speaker (lines, words, speaking time, first appearance) for casting.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from diarkit.result import SpeakerTurn, TranscriptResult, Word
from diarkit.timecode import FrameRate

COLUMNS = ("In-TC", "Out-TC", "Source", "Dialogue")
SPEAKER_COLUMNS = ("Source", "Lines", "Words", "Speaking time (s)", "First appearance")
OVERLAP_TEXT = "(overlapping speech)"
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass
class DialogueRow:
    start: float
    end: float
    source: str
    dialogue: str
    words: int


def _source(speaker: str | None) -> str:
    return (speaker or "UNKNOWN").upper()


def dialogue_rows(result: TranscriptResult, *, merge_pause: float = 1.0, min_overlap: float = 0.3
                  ) -> list[DialogueRow]:
    rows: list[DialogueRow] = []
    current: list[Word] = []

    def close() -> None:
        if current:
            rows.append(DialogueRow(current[0].start, max(w.end for w in current), _source(current[0].speaker),
                                    " ".join(w.word.strip() for w in current), len(current)))
            current.clear()

    for word in sorted(result.words, key=lambda w: (w.start, w.end)):
        if current and (word.speaker != current[-1].speaker or word.start - current[-1].end > merge_pause):
            close()
        current.append(word)
    close()
    rows.extend(_overlap_rows(result.turns, rows, merge_pause, min_overlap))
    return sorted(rows, key=lambda r: (r.start, r.end, r.source))


def _merged(turns: list[SpeakerTurn], merge_pause: float) -> list[SpeakerTurn]:
    merged: list[SpeakerTurn] = []
    for turn in sorted(turns, key=lambda t: (t.speaker, t.start)):
        if merged and merged[-1].speaker == turn.speaker and turn.start - merged[-1].end <= merge_pause:
            merged[-1] = SpeakerTurn(merged[-1].start, max(merged[-1].end, turn.end), turn.speaker)
        else:
            merged.append(turn)
    return merged


def _overlap_rows(turns: list[SpeakerTurn], rows: list[DialogueRow], merge_pause: float,
                  min_overlap: float) -> list[DialogueRow]:
    """Turns with no words of their own that overlap another speaker's words for at least ``min_overlap``."""
    extra = []
    for turn in _merged(turns, merge_pause):
        source = _source(turn.speaker)
        own = any(r.source == source and r.start < turn.end and r.end > turn.start for r in rows)
        overlap = sum(max(0.0, min(r.end, turn.end) - max(r.start, turn.start)) for r in rows if r.source != source)
        if not own and overlap >= min_overlap:
            extra.append(DialogueRow(turn.start, turn.end, source, OVERLAP_TEXT, 0))
    return extra


def _rate(result: TranscriptResult) -> FrameRate:
    return FrameRate.parse(result.frame_rate)


def to_csv(result: TranscriptResult) -> str:
    rate = _rate(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in dialogue_rows(result):
        writer.writerow((rate.timecode(row.start), rate.timecode(row.end), row.source, row.dialogue))
    return buffer.getvalue()


def speaker_rows(result: TranscriptResult, rows: list[DialogueRow], rate: FrameRate) -> list[tuple]:
    time_by_label = {_source(s.label): s.speaking_time for s in result.speakers}
    out = []
    for source in sorted({r.source for r in rows} | set(time_by_label)):
        mine = [r for r in rows if r.source == source]
        first = min((r.start for r in mine), default=None)
        out.append((source, sum(1 for r in mine if r.words), sum(r.words for r in mine),
                    round(time_by_label.get(source, 0.0), 2), rate.timecode(first) if first is not None else ""))
    return out


def to_xlsx(result: TranscriptResult) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    rate = _rate(result)
    rows = dialogue_rows(result)
    book = Workbook()
    sheet = book.active
    sheet.title = "Dialogue"
    sheet.append(COLUMNS)
    for row in rows:
        sheet.append((rate.timecode(row.start), rate.timecode(row.end), row.source, row.dialogue))
    speakers = book.create_sheet("Speakers")
    speakers.append(SPEAKER_COLUMNS)
    for values in speaker_rows(result, rows, rate):
        speakers.append(values)
    for ws, widths in ((sheet, (13, 13, 16, 80)), (speakers, (16, 8, 8, 18, 18))):
        for cell in ws[1]:
            cell.font = Font(bold=True)
        ws.freeze_panes = "A2"
        for letter, width in zip("ABCDE", widths):
            ws.column_dimensions[letter].width = width
    for (cell,) in sheet.iter_rows(min_row=2, min_col=4, max_col=4):
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    book.properties.description = f"timecodes at {rate.name} fps" + (" drop-frame" if rate.drop_frame else "")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
