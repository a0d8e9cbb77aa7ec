"""Decode any media to 16 kHz mono float32 with ffmpeg, once.

ffmpeg handles every container and codec users send (wav, flac, mp3, m4a/aac, ogg/opus,
mp4/mkv/mov); we only ask it for raw float32 samples on stdout, so there is no
intermediate file and no second resampling step anywhere in the pipeline.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diarkit.errors import InputNotFoundError, MediaError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about the input, before decoding."""

    path: str
    container: str
    audio_codec: str
    sample_rate: int
    channels: int
    duration: float | None
    #: the first video stream's ``avg_frame_rate`` (``30000/1001``) and timecode tag, if any
    video_frame_rate: str | None = None
    video_timecode: str | None = None


def _ffmpeg_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise MediaError(
            f"{name} is not installed",
            hint="install ffmpeg (apt-get install ffmpeg) and retry",
        )
    return found


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputNotFoundError("no such file", path=str(path), hint="check the path")
    if path.is_dir():
        raise InputNotFoundError("is a directory, not a media file", path=str(path))
    if path.stat().st_size == 0:
        raise MediaError("file is empty (0 bytes)", path=str(path), hint="re-export or re-upload it")


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe the first audio stream, or explain why there is none."""
    path = Path(path)
    _check_readable(path)
    cmd = [
        _ffmpeg_binary("ffprobe"), "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", "--", str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0:
        reason = _last_line(proc.stderr) or "ffprobe could not read it"
        raise MediaError(
            f"not a readable audio or video file ({reason})",
            path=str(path),
            hint="send wav, flac, mp3, m4a, ogg/opus, mp4, mkv or mov",
        )
    info = json.loads(proc.stdout or b"{}")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise MediaError(
            "has no audio track",
            path=str(path),
            hint="check that the export includes the dialogue track",
        )
    stream = streams[0]
    duration = stream.get("duration") or info.get("format", {}).get("duration")
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    return MediaInfo(
        path=str(path),
        container=info.get("format", {}).get("format_name", ""),
        audio_codec=stream.get("codec_name", ""),
        sample_rate=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
        duration=float(duration) if duration not in (None, "N/A") else None,
        video_frame_rate=(video.get("avg_frame_rate") or video.get("r_frame_rate")) if video else None,
        video_timecode=((video or {}).get("tags", {}).get("timecode")
                        or info.get("format", {}).get("tags", {}).get("timecode")),
    )


def decode(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Return the first audio track as mono float32 at ``sample_rate``.

    Stereo and multichannel tracks are downmixed by ffmpeg. A stream that is cut short
    (truncated upload) is an error, not a silently shorter result.
    """
    path = Path(path)
    info = probe(path)
    cmd = [
        _ffmpeg_binary("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-xerror", "-i", str(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]
    logger.debug("decoding %s (%s, %s, %s Hz, %s ch)", path, info.container,
                 info.audio_codec, info.sample_rate, info.channels)
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise MediaError(
            f"could not decode the audio ({_last_line(proc.stderr) or 'ffmpeg failed'})",
            path=str(path),
            hint="the file may be truncated or corrupt; re-export it",
        )
    audio = np.frombuffer(proc.stdout, dtype=np.float32)
    if audio.size == 0:
        raise MediaError("decoded to no audio samples", path=str(path),
                         hint="the file may be truncated or corrupt; re-export it")
    if info.duration and audio.size / sample_rate < 0.5 * info.duration - 1.0:
        raise MediaError(
            f"decoded only {audio.size / sample_rate:.1f} s of {info.duration:.1f} s",
            path=str(path), hint="the file is truncated; re-upload it",
        )
    if not np.all(np.isfinite(audio)):
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    return audio.copy()  # frombuffer is read-only


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
