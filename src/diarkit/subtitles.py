"""Subtitle events that follow a timed-text style guide, and a checker for any subtitle file.

Why a module of its own: SRT, WebVTT and TTML are all written from the same events, and
the checker applies the same named rules profile to files from anywhere (ours or a
vendor's), so the rules, the event builder and the checker live together.

Builder: words (with their speakers) -> blocks of one speaker that fit the profile's
lines (cut at sentence ends, pauses, and otherwise at the best phrase boundary) -> short
exchanges of two speakers become one event of two hyphenated lines -> times on the frame
grid: at least the minimum duration, long enough to read when the neighbours allow, at
most the maximum, and the minimum gap between events. An event whose verbatim words
cannot be read at the profile's speed even with all the time the rules allow is listed
as a warning (a person condenses it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from diarkit.errors import DiarkitError, OptionsError
from diarkit.result import Word
from diarkit.timecode import FrameRate

logger = logging.getLogger(__name__)

SENTENCE_END = (".", "?", "!", "…")
PHRASE_END = (",", ";", ":", "—", "-") + SENTENCE_END
#: a line may start with these (the break goes before them)
PHRASE_STARTS = frozenset(
    "and but or so because if when while which who whom whose that than then where after before "
    "until unless although though since as to of in on at with for from by about into over".split())
#: a line should not end with these (they belong with the next word)
CLINGING = frozenset("a an the my your his her its our their this these those to of in on at with for "
                     "from by and or but i mr mrs ms dr".split())


@dataclass(frozen=True)
class SubtitleRules:
    """A timed-text style guide, as numbers."""

    name: str
    description: str
    max_chars_per_line: int = 42
    max_lines: int = 2
    max_chars_per_second: float = 20.0
    min_duration: float = 5 / 6  # 20 frames at 24 fps
    max_duration: float = 7.0
    min_gap_frames: int = 2
    #: builder only: a pause this long (s) always starts a new event
    max_pause: float = 1.0
    #: builder only: an event may start this early (s) before its first word to gain reading time
    max_lead_in: float = 0.5
    #: builder only: a short event may borrow time from a neighbour, moving its start this far (s)
    max_shift: float = 0.5
    #: builder only: two speakers share an event when the gap between them is under this (s)
    dual_speaker_max_gap: float = 1.0

    def describe(self) -> dict:
        return asdict(self)


RULES: dict[str, SubtitleRules] = {
    rules.name: rules for rules in (
        SubtitleRules("streaming-en", "streaming-platform English, adult programs"),
        SubtitleRules("streaming-en-children", "streaming-platform English, children's programs",
                      max_chars_per_second=17.0),
    )
}
DEFAULT_RULES = "streaming-en"


def get_rules(name: str | None = None) -> SubtitleRules:
    key = (name or DEFAULT_RULES).strip().lower()
    if key not in RULES:
        raise OptionsError(f"unknown subtitle rules {name!r}", hint=f"choose from {', '.join(RULES)}")
    return RULES[key]


# -- events -------------------------------------------------------------------------------
@dataclass
class SubtitleEvent:
    """One subtitle on screen: frames on the media's grid, display lines, a speaker per line."""

    start: int
    end: int
    lines: list[str]
    speakers: list[str | None]

    def line_speakers(self) -> list[str | None]:
        """The speaker of each line (one speaker's event: the same on every line)."""
        if len(self.speakers) == len(self.lines):
            return list(self.speakers)
        return [self.speakers[0] if self.speakers else None] * len(self.lines)

    def seconds(self, rate: FrameRate) -> tuple[float, float]:
        return rate.seconds(self.start), rate.seconds(self.end)


@dataclass
class SubtitleTrack:
    events: list[SubtitleEvent]
    rate: FrameRate
    rules: SubtitleRules
    warnings: list[str] = field(default_factory=list)


#: a speaker name before the text (SRT, which has no speaker markup): ``DIANE: `` or ``-DIANE: ``
SPEAKER_LABEL = re.compile(r"^(-?)[A-Z0-9_][A-Z0-9_.' -]*: ")


def reading_chars(lines: list[str]) -> int:
    """Characters a viewer reads: every character of every line, spaces included, not the breaks.

    A speaker name in capitals before the text (``DIANE: ``) is a label for the people who
    work on the file, read at a glance: it counts in the line length, not in reading speed."""
    return sum(len(SPEAKER_LABEL.sub(r"\1", line)) for line in lines)


def break_lines(text: str, max_chars: int, max_lines: int = 2) -> list[str] | None:
    """The text as at most ``max_lines`` lines of at most ``max_chars``, broken at the best
    phrase boundary (after punctuation, before a conjunction, never after an article), lines
    about as long as each other; None when it cannot fit."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text]
    if max_lines < 2:
        return None
    words = text.split(" ")
    best: tuple[float, list[str]] | None = None
    for k in range(1, len(words)):
        top, bottom = " ".join(words[:k]), " ".join(words[k:])
        if len(top) > max_chars or len(bottom) > max_chars:
            continue
        cost = abs(len(top) - len(bottom)) + (2 if len(top) > len(bottom) else 0)  # bottom-heavy preferred
        last, following = words[k - 1], words[k]
        if last.endswith(SENTENCE_END):
            cost -= 40
        elif last.endswith(PHRASE_END):
            cost -= 25
        elif following.lower().strip(",.?!") in PHRASE_STARTS:
            cost -= 12
        if last.lower().strip(",.?!") in CLINGING:
            cost += 30
        if best is None or cost < best[0]:
            best = (cost, [top, bottom])
    return best[1] if best else None


def _text(words: list[Word]) -> str:
    return " ".join(w.word.strip() for w in words if w.word.strip())


def _blocks(words: list[Word], rules: SubtitleRules) -> list[list[Word]]:
    """Words -> runs of one speaker, each short enough for one event."""
    blocks: list[list[Word]] = []

    def fits(ws: list[Word]) -> bool:
        return (break_lines(_text(ws), rules.max_chars_per_line, rules.max_lines) is not None
                and ws[-1].end - ws[0].start <= rules.max_duration)

    current: list[Word] = []
    for word in words:
        if not word.word.strip():
            continue
        if current:
            previous = current[-1]
            if word.speaker != previous.speaker or word.start - previous.end > rules.max_pause:
                blocks.append(current)
                current = []
            elif not fits(current + [word]):
                # cut at the last sentence end past a third of the block, else at the last phrase
                # end past half of it, else before this word
                total = len(_text(current))
                cut = len(current)
                for ends, share in ((SENTENCE_END, 1 / 3), (PHRASE_END, 1 / 2)):
                    found = [i for i in range(1, len(current))
                             if current[i - 1].word.endswith(ends) and len(_text(current[:i])) >= total * share]
                    if found:
                        cut = found[-1]
                        break
                blocks.append(current[:cut])
                current = current[cut:]
                while current and not fits(current + [word]):  # a tail that still does not fit
                    blocks.append(current[:1])
                    current = current[1:]
        current.append(word)
    if current:
        blocks.append(current)
    return blocks


@dataclass
class _Draft:
    words: list[Word]
    lines: list[str]
    speakers: list[str | None]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return max(w.end for w in self.words)


def _drafts(blocks: list[list[Word]], rules: SubtitleRules) -> list[_Draft]:
    drafts = [_Draft(b, break_lines(_text(b), rules.max_chars_per_line, rules.max_lines) or [_text(b)],
                     [b[0].speaker]) for b in blocks]
    merged: list[_Draft] = []
    i = 0
    while i < len(drafts):
        a = drafts[i]
        if i + 1 < len(drafts) and rules.max_lines >= 2:
            b = drafts[i + 1]
            one_line = (len(a.lines) == 1 and len(b.lines) == 1
                        and len(a.lines[0]) + 1 <= rules.max_chars_per_line
                        and len(b.lines[0]) + 1 <= rules.max_chars_per_line)
            short = any(d.end - d.start < max(rules.min_duration, reading_chars(d.lines) / rules.max_chars_per_second)
                        for d in (a, b))
            if (one_line and short and a.speakers[0] != b.speakers[0]
                    and b.start - a.end < rules.dual_speaker_max_gap
                    and b.end - a.start <= rules.max_duration):
                merged.append(_Draft(a.words + b.words, [f"-{a.lines[0]}", f"-{b.lines[0]}"],
                                     [a.speakers[0], b.speakers[0]]))
                i += 2
                continue
        merged.append(a)
        i += 1
    return merged


def build_events(words: list[Word], rate: FrameRate | str | None = None, rules: SubtitleRules | str | None = None,
                 *, duration: float | None = None, speaker_labels: bool = False) -> SubtitleTrack:
    """Subtitle events for words that already carry their speakers; ``speaker_labels`` puts
    ``NAME: `` where the speaker changes and it fits, for formats with no speaker markup (SRT)."""
    rate = FrameRate.parse(rate)
    rules = rules if isinstance(rules, SubtitleRules) else get_rules(rules)
    words = sorted((w for w in words if w.end >= w.start), key=lambda w: (w.start, w.end))
    drafts = _drafts(_blocks(words, rules), rules)
    min_frames = rate.frames(rules.min_duration)
    max_frames = int(rules.max_duration * float(rate.fps) + 1e-9)
    gap = rules.min_gap_frames
    lead_in = rate.frames(rules.max_lead_in)
    last_frame = rate.frame(duration) if duration else None
    events: list[SubtitleEvent] = []
    warnings: list[str] = []
    previous_end: int | None = None
    for i, draft in enumerate(drafts):
        floor = 0 if previous_end is None else previous_end + gap
        desired_start = rate.frame(draft.start)
        desired_end = max(rate.frame(draft.end), desired_start + 1)
        need = max(min_frames, rate.frames(reading_chars(draft.lines) / rules.max_chars_per_second))
        if i + 1 < len(drafts):
            limit = rate.frame(drafts[i + 1].start) - gap
        else:
            limit = max(last_frame, desired_end) if last_frame is not None else desired_start + max_frames
        start = max(desired_start, floor)
        if start + need > limit:  # not enough room after the words: start a little early
            start = max(floor, desired_start - lead_in, min(start, limit - need))
        end = min(max(desired_end, start + need), start + max_frames, max(limit, start + min_frames))
        end = max(end, start + min_frames)
        events.append(SubtitleEvent(start, end, draft.lines, draft.speakers))
        previous_end = end
    needs = [max(min_frames, rate.frames(reading_chars(e.lines) / rules.max_chars_per_second)) for e in events]
    _share_time(events, needs, [rate.frame(d.start) for d in drafts], gap=gap, max_frames=max_frames,
                shift=rate.frames(rules.max_shift))
    for number, event in enumerate(events, 1):
        cps = reading_chars(event.lines) / ((event.end - event.start) / float(rate.fps))
        if cps > rules.max_chars_per_second + 1e-6:
            warnings.append(f"subtitle {number} at {rate.timecode_of_frame(event.start)}: reading speed "
                            f"{cps:.1f} characters per second is over {rules.max_chars_per_second:g} even with "
                            f"all the time the rules allow; condense {' / '.join(event.lines)!r}")
    if speaker_labels:
        _label_speakers(events, rules)
    return SubtitleTrack(events, rate, rules, warnings)


def _label_speakers(events: list[SubtitleEvent], rules: SubtitleRules) -> None:
    """``NAME: `` where the speaker changes, for formats with no speaker markup (SRT).

    The events (and so their times and reading speed) stay those of every other format; a
    label goes in only where the lines still fit the rules with it, else that event keeps
    its lines as they are (the speaker is then in the other formats' markup only)."""
    previous = None
    for event in events:
        speakers = event.line_speakers()
        if len(set(speakers)) > 1:  # a two-speaker event: "-NAME: text" per line
            labelled = [f"-{(s or 'UNKNOWN').upper()}: {line[1:]}" if line.startswith("-") else line
                        for line, s in zip(event.lines, speakers)]
            if all(len(line) <= rules.max_chars_per_line for line in labelled):
                event.lines = labelled
        elif speakers and speakers[0] != previous:
            text = f"{(speakers[0] or 'UNKNOWN').upper()}: " + " ".join(event.lines)
            lines = break_lines(text, rules.max_chars_per_line, rules.max_lines)
            if lines is not None and reading_chars(lines) <= reading_chars(event.lines):  # no slower to read
                event.lines = lines
        previous = speakers[-1] if speakers else previous


def _share_time(events: list[SubtitleEvent], needs: list[int], desired_starts: list[int], *, gap: int,
                max_frames: int, shift: int) -> None:
    """An event too short to read borrows frames from a neighbour that has more than it needs,
    moving the shared boundary by at most ``shift`` frames from where the words start."""
    for i, event in enumerate(events):
        deficit = needs[i] - (event.end - event.start)
        if deficit > 0 and i + 1 < len(events):  # the next event starts later
            following = events[i + 1]
            room = min(desired_starts[i + 1] + shift - following.start, following.end - needs[i + 1] - following.start)
            new_end = min(event.end + deficit, event.start + max_frames, following.start + max(0, room) - gap)
            if new_end > event.end:
                following.start = max(following.start, new_end + gap)
                event.end = new_end
                deficit = needs[i] - (event.end - event.start)
        if deficit > 0 and i > 0:  # the previous event ends earlier
            before = events[i - 1]
            free = event.start - gap - before.end
            room = min(event.start - (desired_starts[i] - shift), max_frames - (event.end - event.start),
                       free + max(0, before.end - before.start - needs[i - 1]))
            take = max(0, min(deficit, room))
            if take:
                event.start -= take
                before.end = min(before.end, event.start - gap)


# -- checker ------------------------------------------------------------------------------
@dataclass
class CheckedEvent:
    """An event as read back from a file: seconds and display lines."""

    start: Fraction
    end: Fraction
    lines: list[str]


@dataclass
class Violation:
    index: int  # 1-based event number
    kind: str  # line_length, line_count, reading_speed, min_duration, max_duration, gap, overlap, frame
    message: str

    def __str__(self) -> str:
        return f"event {self.index}: {self.kind}: {self.message}"


KINDS = ("line_length", "line_count", "reading_speed", "min_duration", "max_duration", "gap", "overlap", "frame")


class SubtitleFileError(DiarkitError):
    status = 400
    kind = "bad_subtitle_file"


def check_events(events: list[CheckedEvent], rules: SubtitleRules | str | None = None,
                 rate: FrameRate | str | None = None, *, frame_tolerance: float = 0.0005) -> list[Violation]:
    """Every rule every event breaks, in event order."""
    rules = rules if isinstance(rules, SubtitleRules) else get_rules(rules)
    rate = FrameRate.parse(rate)
    frame = Fraction(1) / rate.fps
    found: list[Violation] = []
    ordered = sorted(enumerate(events, 1), key=lambda item: (item[1].start, item[1].end))
    for position, (index, event) in enumerate(ordered):
        duration = event.end - event.start
        for n, line in enumerate(event.lines, 1):
            if len(line) > rules.max_chars_per_line:
                found.append(Violation(index, "line_length",
                                       f"line {n} has {len(line)} characters (at most {rules.max_chars_per_line}): "
                                       f"{line!r}"))
        if len(event.lines) > rules.max_lines:
            found.append(Violation(index, "line_count", f"{len(event.lines)} lines (at most {rules.max_lines})"))
        # compared at frame precision: a millisecond format cannot hold 5/6 s exactly
        if duration < Fraction(rules.min_duration).limit_denominator(1000) - frame / 2:
            found.append(Violation(index, "min_duration",
                                   f"on screen {float(duration):.3f} s (at least {rules.min_duration:.3f} s)"))
        if duration > Fraction(rules.max_duration).limit_denominator(1000) + Fraction(1, 2000):
            found.append(Violation(index, "max_duration",
                                   f"on screen {float(duration):.3f} s (at most {rules.max_duration:.3f} s)"))
        if duration > 0:
            cps = reading_chars(event.lines) / float(duration)
            if cps > rules.max_chars_per_second + 0.05:
                found.append(Violation(index, "reading_speed",
                                       f"{cps:.1f} characters per second (at most {rules.max_chars_per_second:g})"))
        for name, value in (("start", event.start), ("end", event.end)):
            if not rate.on_frame(float(value), frame_tolerance):
                found.append(Violation(index, "frame", f"{name} {float(value):.3f} s is not on a frame at "
                                                       f"{rate.name} fps"))
        if position + 1 < len(ordered):
            following_index, following = ordered[position + 1]
            space = following.start - event.end
            if space < 0:
                found.append(Violation(index, "overlap", f"ends {float(-space):.3f} s after event "
                                                         f"{following_index} starts"))
            elif space < rules.min_gap_frames * frame - Fraction(1, 1000):
                found.append(Violation(index, "gap", f"{float(space):.3f} s before event {following_index} "
                                                     f"(at least {rules.min_gap_frames} frames)"))
    return found


def _model_events(document) -> list[CheckedEvent]:
    """Events of a ttconv content document: each ``p`` with its begin/end, ``br`` as line breaks."""
    from ttconv import model

    events: list[CheckedEvent] = []

    def text_of(element) -> str:
        if isinstance(element, model.Text):
            return element.get_text()
        if isinstance(element, model.Br):
            return "\n"
        return "".join(text_of(child) for child in element)

    def exact(value) -> Fraction:  # the SRT/VTT readers give floats of whole milliseconds
        return Fraction(str(value)) if isinstance(value, float) else Fraction(value or 0)

    def walk(element, offset: Fraction) -> None:
        begin = offset + exact(element.get_begin())
        if isinstance(element, model.P):
            end = element.get_end()
            if end is None:
                raise SubtitleFileError("a subtitle has no end time")
            lines = [line.strip() for line in text_of(element).split("\n")]
            events.append(CheckedEvent(begin, offset + exact(end), [line for line in lines if line]))
            return
        for child in element:
            walk(child, begin)

    body = document.get_body()
    if body is not None:
        walk(body, Fraction(0))
    return events


def read_subtitles(path: str | Path) -> tuple[list[CheckedEvent], FrameRate | None]:
    """Events of an SRT, WebVTT or TTML file (read by ttconv), and the frame rate a TTML file declares."""
    import xml.etree.ElementTree as et

    from ttconv.imsc import reader as imsc_reader
    from ttconv.srt import reader as srt_reader
    from ttconv.vtt import reader as vtt_reader

    path = Path(path)
    if not path.is_file():
        raise SubtitleFileError("no such file", path=str(path), hint="check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".srt":
            with open(path, encoding="utf-8-sig") as handle:
                document = srt_reader.to_model(handle)
            rate = None
        elif suffix == ".vtt":
            with open(path, encoding="utf-8-sig") as handle:
                document = vtt_reader.to_model(handle)
            rate = None
        elif suffix in (".ttml", ".xml", ".dfxp"):
            tree = et.parse(path)
            document = imsc_reader.to_model(tree)
            rate = _declared_rate(tree.getroot())
        else:
            raise SubtitleFileError(f"unknown subtitle format {suffix or '(no extension)'!r}", path=str(path),
                                    hint="check .srt, .vtt or .ttml files")
    except SubtitleFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is the file's fault
        raise SubtitleFileError(f"cannot be read as {suffix[1:].upper()} ({type(exc).__name__}: {exc})",
                                path=str(path)) from None
    if document is None:
        raise SubtitleFileError(f"cannot be read as {suffix[1:].upper()}", path=str(path))
    return _model_events(document), rate


def _declared_rate(root) -> FrameRate | None:
    ttp = "{http://www.w3.org/ns/ttml#parameter}"
    rate = root.get(f"{ttp}frameRate")
    if rate is None:
        return None
    multiplier = root.get(f"{ttp}frameRateMultiplier", "1 1").split()
    fps = Fraction(int(rate)) * Fraction(int(multiplier[0]), int(multiplier[1]))
    return FrameRate(fps, root.get(f"{ttp}dropMode", "nonDrop") != "nonDrop")


def track_for(result, *, speaker_labels: bool = False) -> SubtitleTrack:
    """The events every subtitle writer renders for a TranscriptResult (its frame rate and rules)."""
    return build_events(result.words, result.frame_rate, result.subtitle_rules, duration=result.duration,
                        speaker_labels=speaker_labels)


def check_file(path: str | Path, rules: SubtitleRules | str | None = None,
               rate: FrameRate | str | None = None) -> list[Violation]:
    """Violations of one file; a TTML file's own frame rate is used unless ``rate`` is given."""
    events, declared = read_subtitles(path)
    return check_events(events, rules, rate if rate is not None else declared)
