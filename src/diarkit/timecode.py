"""Frame rates and SMPTE timecodes (HH:MM:SS:FF, drop-frame HH:MM:SS;FF at 29.97).

Subtitle and dialogue-list times live on the media's frame grid. The frame arithmetic,
drop-frame included, is ttconv's ``SmpteTimeCode``; this module only names the rates a
request may ask for, reads a rate from ffprobe's answer, and rounds seconds to frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ttconv.time_code import SmpteTimeCode

from diarkit.errors import OptionsError

#: the rates the ``--frame-rate`` flag / ``frame_rate`` option accept
NAMED_RATES: dict[str, tuple[Fraction, bool]] = {
    "23.976": (Fraction(24000, 1001), False),
    "24": (Fraction(24), False),
    "25": (Fraction(25), False),
    "29.97": (Fraction(30000, 1001), False),
    "29.97df": (Fraction(30000, 1001), True),
    "30": (Fraction(30), False),
    "50": (Fraction(50), False),
    "59.94": (Fraction(60000, 1001), False),
    "59.94df": (Fraction(60000, 1001), True),
    "60": (Fraction(60), False),
}
#: audio has no frames of its own: 25 fps puts every frame on a whole millisecond
DEFAULT_FRAME_RATE = "25"


@dataclass(frozen=True)
class FrameRate:
    fps: Fraction
    drop_frame: bool = False

    @property
    def name(self) -> str:
        for name, (fps, drop) in NAMED_RATES.items():
            if fps == self.fps and drop == self.drop_frame:
                return name
        if self.fps.denominator == 1:
            return str(self.fps.numerator)
        return f"{self.fps.numerator}/{self.fps.denominator}"

    @classmethod
    def parse(cls, value: "str | FrameRate | None") -> "FrameRate":
        """A named rate (``29.97df``), a whole number or ``num/den``; None: the default."""
        if isinstance(value, FrameRate):
            return value
        text = str(value if value is not None else DEFAULT_FRAME_RATE).strip().lower()
        if text in NAMED_RATES:
            return cls(*NAMED_RATES[text])
        try:
            fps = Fraction(text)
        except (ValueError, ZeroDivisionError):
            fps = None
        if fps is None or not 1 <= fps <= 120:
            raise OptionsError(f"frame rate must be one of {', '.join(NAMED_RATES)} (or num/den), not {value!r}")
        return cls(fps, False)

    @classmethod
    def from_ffprobe(cls, rate: str | None, timecode: str | None = None) -> "FrameRate | None":
        """A video stream's ``avg_frame_rate`` (``30000/1001``); drop-frame at 29.97/59.94 unless
        the stream's timecode tag is written non-drop (``00:00:00:00`` rather than ``;``)."""
        try:
            fps = Fraction(rate or "0/0")
        except (ValueError, ZeroDivisionError):
            return None
        fps = fps.limit_denominator(1001)
        if not 1 <= fps <= 120:  # a still image, or a rate no subtitle is timed at: use the default
            return None
        drop = fps.denominator == 1001 and fps.numerator in (30000, 60000)
        if drop and timecode and ";" not in timecode and "." not in timecode:
            drop = False
        return cls(fps, drop)

    # -- frames -------------------------------------------------------------------------
    def frame(self, seconds: float) -> int:
        """The nearest frame to a time in seconds."""
        return max(0, int(math.floor(seconds * float(self.fps) + 0.5)))

    def seconds(self, frame: int) -> float:
        return float(Fraction(frame) / self.fps)

    def frames(self, seconds: float) -> int:
        """A duration in whole frames, rounded up (so a minimum is never undercut)."""
        return int(math.ceil(seconds * float(self.fps) - 1e-9))

    def on_frame(self, seconds: float, tolerance: float = 0.0005) -> bool:
        """Whether a time is on the frame grid (within ``tolerance``: millisecond formats round)."""
        return abs(seconds - self.seconds(self.frame(seconds))) <= tolerance + 1e-9

    def timecode(self, seconds: float) -> str:
        """SMPTE timecode of the frame nearest to ``seconds``."""
        return str(SmpteTimeCode.from_frames(self.frame(seconds), self.fps, self.drop_frame))

    def timecode_of_frame(self, frame: int) -> str:
        return str(SmpteTimeCode.from_frames(frame, self.fps, self.drop_frame))

    def parse_timecode(self, text: str) -> int:
        """The frame number of a timecode written at this rate."""
        return SmpteTimeCode.parse(text, self.fps).to_frames()
