"""The one result type every output format is written from.

Plain dataclasses, as faster-whisper does: easy to build in the pipeline, easy to turn
into the documented JSON (``to_dict``) and back (``from_dict``) for the evaluation tools.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = "1.1"  # 1.1: frame_rate, subtitle_rules


@dataclass
class Word:
    word: str
    start: float
    end: float
    score: float | None = None
    speaker: str | None = None


@dataclass
class Segment:
    start: float
    end: float
    text: str
    speaker: str | None = None
    words: list[Word] = field(default_factory=list)


@dataclass
class SpeakerTurn:
    """One stretch of speech by one speaker (turns of different speakers may overlap)."""

    start: float
    end: float
    speaker: str


@dataclass
class Speaker:
    label: str
    speaking_time: float
    words: int = 0
    #: with a voice library: best match, score, the name given (diarkit.voices.match)
    voice: dict[str, Any] | None = None


@dataclass
class TranscriptResult:
    uri: str
    duration: float
    language: str | None
    segments: list[Segment] = field(default_factory=list)
    turns: list[SpeakerTurn] = field(default_factory=list)
    speakers: list[Speaker] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the media's frame rate by name (``25``, ``29.97df``; diarkit.timecode), None: the default
    frame_rate: str | None = None
    #: the subtitle rules profile (diarkit.subtitles), None: the default
    subtitle_rules: str | None = None

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "uri": self.uri,
            "duration": round(self.duration, 3),
            "language": self.language,
            "num_speakers": self.num_speakers,
            "speakers": [{k: v for k, v in asdict(s).items() if k != "voice" or v is not None}
                         for s in self.speakers],
            "segments": [asdict(s) for s in self.segments],
            "diarization": [asdict(t) for t in self.turns],
            "models": self.models,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "options": self.options,
            "warnings": self.warnings,
            "frame_rate": self.frame_rate,
            "subtitle_rules": self.subtitle_rules,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TranscriptResult":
        version = str(data.get("version", ""))
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise ValueError(f"unsupported diarkit JSON version {version!r} (expected {SCHEMA_VERSION})")
        segments = [
            Segment(
                start=s["start"], end=s["end"], text=s.get("text", ""), speaker=s.get("speaker"),
                words=[Word(**w) for w in s.get("words", [])],
            )
            for s in data.get("segments", [])
        ]
        return cls(
            uri=data.get("uri", ""),
            duration=float(data.get("duration", 0.0)),
            language=data.get("language"),
            segments=segments,
            turns=[SpeakerTurn(**t) for t in data.get("diarization", [])],
            speakers=[Speaker(**s) for s in data.get("speakers", [])],
            models=data.get("models", {}),
            timings=data.get("timings", {}),
            options=data.get("options", {}),
            warnings=data.get("warnings", []),
            frame_rate=data.get("frame_rate"),
            subtitle_rules=data.get("subtitle_rules"),
        )
