"""What one request asks for, as one type, wherever it comes from.

The CLI's flags, the HTTP JSON ``options`` object, SageMaker's custom-attributes string
(``num_speakers=2;language=en``) and the worker's flags are each parsed here once, at
their edge, into a ``RequestOptions``; the pipeline, the server and the worker pass that
object on and never parse again. Every rule (ranges, codes, formats) lives in
``RequestOptions.__post_init__``, so an object that exists is valid. No torch here: the
server checks requests before any model is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from diarkit.errors import OptionsError
from diarkit.subtitles import get_rules
from diarkit.timecode import FrameRate
from diarkit.writers import parse_formats

MAX_SPEAKERS = 50
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True)
class RequestOptions:
    """Per-request options; ``None`` means "not given" (the pipeline's default)."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    language: str | None = None
    #: the one format of an answer (HTTP reply, the queue worker's ``.out`` object)
    format: str | None = None
    #: subtitle/timecode frame rate (``25``, ``29.97df``...); None: the video's, else 25
    frame_rate: str | None = None
    #: subtitle rules profile (diarkit.subtitles.RULES); None: the default
    subtitle_rules: str | None = None
    #: a voice library (folder or s3:// prefix) whose voices name the speakers (diarkit.voices)
    voices: str | None = None

    def __post_init__(self):
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise OptionsError(f"{name} must be a whole number, not {value!r}")
            if not 1 <= value <= MAX_SPEAKERS:
                raise OptionsError(f"{name} must be between 1 and {MAX_SPEAKERS}, not {value}")
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise OptionsError(f"min_speakers ({self.min_speakers}) is larger than max_speakers "
                               f"({self.max_speakers})")
        if self.language is not None and not _LANGUAGE.match(self.language):
            raise OptionsError(f"language must be a language code such as en, not {self.language!r}")
        if self.format is not None:
            formats = parse_formats(self.format)
            if len(formats) != 1:
                raise OptionsError(f"format must name one format, not {self.format!r}")
            object.__setattr__(self, "format", formats[0])
        if self.frame_rate is not None:
            object.__setattr__(self, "frame_rate", FrameRate.parse(self.frame_rate).name)
        if self.subtitle_rules is not None:
            object.__setattr__(self, "subtitle_rules", get_rules(self.subtitle_rules).name)
        if self.voices is not None and (not isinstance(self.voices, str) or not self.voices.strip()
                                        or self.voices.startswith("s3://") and len(self.voices.strip("/")) <= 4):
            raise OptionsError(f"voices must be a folder or an s3://bucket/prefix/ URI, not {self.voices!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def speaker_hints(self) -> dict[str, int | None]:
        return {"num_speakers": self.num_speakers, "min_speakers": self.min_speakers,
                "max_speakers": self.max_speakers}

    def given(self) -> dict[str, Any]:
        """The options that were given (not None), in field order."""
        return {name: getattr(self, name) for name in self.names() if getattr(self, name) is not None}

    # -- edges ---------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "options") -> "RequestOptions":
        """A JSON object or key=value pairs; keys are case- and dash-insensitive."""
        known = cls.names()
        parsed: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = str(raw_key).strip().lower().replace("-", "_")
            if key not in known:
                raise OptionsError(f"unknown option {raw_key!r} in {source}",
                                   hint=f"known options: {', '.join(known)}")
            if value is None:
                continue
            if key.endswith("_speakers"):
                parsed[key] = _whole_number(key, value, source)
            elif key == "language":
                parsed[key] = _text(key, value, source).lower()
            else:
                parsed[key] = _text(key, value, source)
        try:
            return cls(**parsed)
        except OptionsError as exc:
            raise OptionsError(f"{exc.message.replace(' must', f' in {source} must', 1)}", hint=exc.hint) from None

    @classmethod
    def from_custom_attributes(cls, text: str | None) -> "RequestOptions":
        """``num_speakers=2;language=en;format=vtt`` (empty or None: no options)."""
        if text is None or not text.strip():
            return cls()
        values: dict[str, str] = {}
        for part in text.split(";"):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            key = key.strip().lower().replace("-", "_")
            if not sep or not key:
                raise OptionsError(f"custom attribute {part!r} is not key=value",
                                   hint="write them as num_speakers=2;language=en")
            if key in values:
                raise OptionsError(f"custom attribute {key!r} is given twice")
            values[key] = value.strip()
        return cls.from_mapping(values, source="custom attributes")

    def to_custom_attributes(self, *, exclude: tuple[str, ...] = ()) -> str:
        """The inverse of ``from_custom_attributes`` (for forwarding to a server)."""
        return ";".join(f"{k}={v}" for k, v in self.given().items() if k not in exclude)

    @classmethod
    def from_flags(cls, *, num_speakers: int | None = None, min_speakers: int | None = None,
                   max_speakers: int | None = None, language: str | None = None,
                   custom_attributes: str | None = None, frame_rate: str | None = None,
                   subtitle_rules: str | None = None, voices: str | None = None) -> "RequestOptions":
        """Command-line flags, over a custom-attributes string (the flags win)."""
        flags = cls.from_mapping({"num_speakers": num_speakers, "min_speakers": min_speakers,
                                  "max_speakers": max_speakers, "language": language,
                                  "frame_rate": frame_rate, "subtitle_rules": subtitle_rules, "voices": voices},
                                 source="the flags")
        return cls.from_custom_attributes(custom_attributes).merged(flags)

    def merged(self, override: "RequestOptions") -> "RequestOptions":
        """These options with every value given in ``override`` replacing ours (checked again)."""
        return replace(self, **override.given())


def _text(key: str, value: Any, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OptionsError(f"{key} in {source} must be a non-empty string, not {value!r}")
    return value.strip()


def _whole_number(key: str, value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise OptionsError(f"{key} in {source} must be a whole number, not {value!r}")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise OptionsError(f"{key} in {source} must be a whole number, not {value!r}")
        value = int(value.strip())
    return value


def parse_custom_attributes(text: str | None) -> RequestOptions:
    return RequestOptions.from_custom_attributes(text)
