"""A transcriber's corrections, as a list of edits replayed over the machine's result.

The review page keeps only the list (undo drops the last edit, redo puts it back); the
server replays it over the original ``TranscriptResult`` for every preview and for the
save, so the saved JSON and every subtitle format come from the one result type.

Words are named by their position in the result's word list (segments in order, words in
order). No edit adds, removes or reorders words, so a position stays valid whatever came
before it in the list. Segments are runs of consecutive words of one speaker; an edit that
gives part of a segment to another speaker cuts the segment there.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from diarkit.assign import speaker_summary
from diarkit.errors import OptionsError
from diarkit.result import Segment, Speaker, SpeakerTurn, TranscriptResult, Word

#: longest speaker name accepted (a character name, not a paragraph)
MAX_NAME = 80
#: most edits one request may carry
MAX_EDITS = 100_000


class EditError(OptionsError):
    """An edit cannot apply to this result (unknown speaker, word out of range...)."""

    kind = "bad_edit"

    def __init__(self, message: str, *, index: int | None = None, hint: str | None = None):
        self.index = index
        prefix = f"edit {index + 1}: " if index is not None else ""
        super().__init__(prefix + message, hint=hint)


def _name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EditError(f"{field_name} must be a non-empty speaker name")
    name = " ".join(value.split())  # one line, single spaces: it goes into SRT, VTT and RTTM
    if len(name) > MAX_NAME:
        raise EditError(f"{field_name} is longer than {MAX_NAME} characters")
    if any(c in name for c in "<>"):
        raise EditError(f"{field_name} may not contain < or > (WebVTT voice spans)")
    return name


def _index(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EditError(f"{field_name} must be a word position (an integer from 0)")
    return value


class _State:
    """The result being edited, flattened into words and cut points."""

    def __init__(self, result: TranscriptResult):
        self.result = _clone(result)
        self.words: list[Word] = [w for s in self.result.segments for w in s.words]
        #: word positions where a segment starts (always includes 0 when there are words)
        self.cuts: set[int] = set()
        position = 0
        for segment in self.result.segments:
            if segment.words:
                self.cuts.add(position)
            position += len(segment.words)
        self.turns: list[SpeakerTurn] = self.result.turns

    def labels(self) -> set[str]:
        return ({s.label for s in self.result.speakers} | {t.speaker for t in self.turns}
                | {w.speaker for w in self.words if w.speaker is not None})

    def relabel(self, old: str, new: str) -> None:
        for word in self.words:
            if word.speaker == old:
                word.speaker = new
        for turn in self.turns:
            if turn.speaker == old:
                turn.speaker = new
        for speaker in self.result.speakers:
            if speaker.label == old:
                speaker.label = new

    def segment_bounds(self, position: int) -> tuple[int, int]:
        """First and one-past-last word positions of the segment holding ``position``."""
        start = max(c for c in self.cuts if c <= position)
        later = [c for c in self.cuts if c > position]
        return start, (min(later) if later else len(self.words))

    def finish(self) -> TranscriptResult:
        """Segments rebuilt from the cuts and speaker changes; turns and speakers tidied."""
        segments: list[Segment] = []
        current: list[Word] = []
        for position, word in enumerate(self.words):
            if current and (position in self.cuts or word.speaker != current[-1].speaker):
                segments.append(_segment(current))
                current = []
            current.append(word)
        if current:
            segments.append(_segment(current))
        result = self.result
        result.segments = segments
        result.turns = _tidy_turns(self.turns)
        result.speakers = speaker_summary(result.turns, self.words)
        return result


def _clone(result: TranscriptResult) -> TranscriptResult:
    """A copy to edit; field by field, as copy.deepcopy takes ~0.2 s on an hour of words."""
    # every other field (frame rate, subtitle rules, a speaker's voice match...) is carried as it is
    return dataclasses.replace(
        result,
        segments=[Segment(start=s.start, end=s.end, text=s.text, speaker=s.speaker,
                          words=[Word(w.word, w.start, w.end, w.score, w.speaker) for w in s.words])
                  for s in result.segments],
        turns=[SpeakerTurn(t.start, t.end, t.speaker) for t in result.turns],
        speakers=[dataclasses.replace(s) for s in result.speakers],
        models=copy.deepcopy(result.models), timings=dict(result.timings), options=copy.deepcopy(result.options),
        warnings=list(result.warnings))


def _segment(words: list[Word]) -> Segment:
    # the same text and times as diarkit.assign.build_segments gives
    return Segment(start=words[0].start, end=max(w.end for w in words), text=" ".join(w.word for w in words),
                   speaker=words[0].speaker, words=list(words))


def _tidy_turns(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    """One speaker's overlapping or touching turns become one (merges make them)."""
    by_speaker: dict[str, list[SpeakerTurn]] = {}
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        if turn.end <= turn.start:
            continue
        own = by_speaker.setdefault(turn.speaker, [])
        if own and turn.start <= own[-1].end:
            own[-1].end = max(own[-1].end, turn.end)
        else:
            own.append(SpeakerTurn(start=turn.start, end=turn.end, speaker=turn.speaker))
    return sorted((t for own in by_speaker.values() for t in own), key=lambda t: (t.start, t.end, t.speaker))


def _carve(turns: list[SpeakerTurn], speakers: set[str], start: float, end: float) -> list[SpeakerTurn]:
    """``turns`` with [start, end) removed from the turns of ``speakers``."""
    kept = []
    for turn in turns:
        if turn.speaker not in speakers or turn.end <= start or turn.start >= end:
            kept.append(turn)
            continue
        if turn.start < start:
            kept.append(SpeakerTurn(start=turn.start, end=start, speaker=turn.speaker))
        if turn.end > end:
            kept.append(SpeakerTurn(start=end, end=turn.end, speaker=turn.speaker))
    return kept


@dataclass
class Edit:
    """Base of every edit: ``at`` is when the transcriber made it (ISO 8601, from the page)."""

    op: ClassVar[str] = ""
    at: str | None = None

    def apply(self, state: _State) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **{k: v for k, v in asdict(self).items() if v is not None}}


@dataclass
class Rename(Edit):
    """Give a speaker a (character) name everywhere."""

    op: ClassVar[str] = "rename"
    speaker: str = ""
    name: str = ""

    def apply(self, state: _State) -> None:
        labels = state.labels()
        if self.speaker not in labels:
            raise EditError(f"no speaker {self.speaker!r}")
        if self.name == self.speaker:
            raise EditError(f"{self.speaker!r} already has that name")
        if self.name in labels:
            raise EditError(f"{self.name!r} is already a speaker", hint="merge the two speakers instead")
        state.relabel(self.speaker, self.name)

    def describe(self) -> str:
        return f"renamed {self.speaker} to {self.name}"


@dataclass
class Merge(Edit):
    """Two labels were the same person: ``source`` becomes ``target`` everywhere."""

    op: ClassVar[str] = "merge"
    source: str = ""
    target: str = ""

    def apply(self, state: _State) -> None:
        labels = state.labels()
        for label in (self.source, self.target):
            if label not in labels:
                raise EditError(f"no speaker {label!r}")
        if self.source == self.target:
            raise EditError("a speaker cannot be merged into itself")
        state.relabel(self.source, self.target)

    def describe(self) -> str:
        return f"merged {self.source} into {self.target}"


@dataclass
class Move(Edit):
    """Words ``first``..``last`` (inclusive) were said by ``speaker`` (existing or new).

    The diarization turns follow: the moved words' time span leaves the turns of the
    speakers they came from and becomes a turn of ``speaker``.
    """

    op: ClassVar[str] = "move"
    first: int = 0
    last: int = 0
    speaker: str = ""

    def apply(self, state: _State) -> None:
        if self.last < self.first:
            raise EditError(f"the range {self.first}-{self.last} is empty")
        if self.last >= len(state.words):
            raise EditError(f"word {self.last} is past the last word ({len(state.words) - 1})")
        moved = state.words[self.first:self.last + 1]
        losers = {w.speaker for w in moved if w.speaker is not None and w.speaker != self.speaker}
        if all(w.speaker == self.speaker for w in moved):
            raise EditError(f"those words are already {self.speaker}'s")
        start, end = moved[0].start, max(w.end for w in moved)
        for word in moved:
            word.speaker = self.speaker
        state.turns[:] = _carve(state.turns, losers, start, end)
        state.turns.append(SpeakerTurn(start=start, end=end, speaker=self.speaker))

    def describe(self) -> str:
        span = f"word {self.first}" if self.first == self.last else f"words {self.first}-{self.last}"
        return f"moved {span} to {self.speaker}"


@dataclass
class Split(Edit):
    """Cut the segment holding ``word`` so that ``word`` starts a new one."""

    op: ClassVar[str] = "split"
    word: int = 0

    def apply(self, state: _State) -> None:
        if self.word >= len(state.words):
            raise EditError(f"word {self.word} is past the last word ({len(state.words) - 1})")
        if self.word in state.cuts:
            raise EditError(f"word {self.word} already starts a segment", hint="pick a word inside the segment")
        state.cuts.add(self.word)

    def describe(self) -> str:
        return f"split the segment before word {self.word}"


#: every edit the page may send, by its ``op``
EDITS: dict[str, type[Edit]] = {cls.op: cls for cls in (Rename, Merge, Move, Split)}

_NAMES = {"speaker", "name", "source", "target"}
_POSITIONS = {"first", "last", "word"}


def parse_edit(data: Any, index: int | None = None) -> Edit:
    """One edit from its JSON form, every field checked."""
    try:
        if not isinstance(data, dict):
            raise EditError("an edit must be a JSON object")
        cls = EDITS.get(data.get("op"))  # type: ignore[arg-type]
        if cls is None:
            raise EditError(f"unknown edit {data.get('op')!r}", hint=f"one of {', '.join(EDITS)}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"op"}
        if unknown:
            raise EditError(f"unknown field(s) {', '.join(sorted(unknown))} for {cls.op}")
        missing = known - set(data) - {"at"}
        if missing:
            raise EditError(f"{cls.op} needs {', '.join(sorted(missing))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in _NAMES:
                values[key] = _name(value, key)
            elif key in _POSITIONS:
                values[key] = _index(value, key)
            elif key == "at":
                if value is not None and (not isinstance(value, str) or len(value) > 40):
                    raise EditError("at must be an ISO 8601 time")
                values[key] = value
        return cls(**values)
    except EditError as exc:
        if index is None or exc.index is not None:
            raise
        raise EditError(exc.message, index=index, hint=exc.hint) from None


def parse_edits(data: Any) -> list[Edit]:
    if not isinstance(data, list):
        raise EditError("edits must be a JSON list")
    if len(data) > MAX_EDITS:
        raise EditError(f"more than {MAX_EDITS} edits")
    return [parse_edit(item, index) for index, item in enumerate(data)]


def apply_edits(result: TranscriptResult, edits: list[Edit]) -> TranscriptResult:
    """A corrected copy of ``result`` (which is left as it is)."""
    state = _State(result)
    for index, edit in enumerate(edits):
        try:
            edit.apply(state)
        except EditError as exc:
            raise EditError(exc.message, index=index, hint=exc.hint) from None
    return state.finish() if edits else _clone(result)
