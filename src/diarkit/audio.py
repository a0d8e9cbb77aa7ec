"""Decode any media to 16 kHz mono float32 with ffmpeg, once.

ffmpeg handles every container and codec users send (wav, flac, mp3, m4a/aac, ogg/opus,
mp4/mkv/mov); we only ask it for raw float32 samples on stdout, so there is no
intermediate file and no second resampling step anywhere in the pipeline.

Inputs come from strangers (HTTP bodies, S3, drop folders), so ffmpeg and ffprobe run
restricted: only demuxers that read the body itself are allowed (``ALLOWED_DEMUXERS``;
playlists, concat lists and manifests, which open other files or URLs, are refused),
only the ``file`` protocol, and the decoder is forced to the demuxer the probe found.
The probed duration is checked against a limit (``DIARKIT_MAX_DURATION``) before any
decoding, and the samples are streamed into one preallocated array.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diarkit.errors import InputNotFoundError, MediaError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000

#: Demuxers whose input is the body itself: none of them opens another file or URL
#: (mov's external data references stay off, its default). ffprobe's ``format_name`` is
#: the demuxer's name list, e.g. ``mov,mp4,m4a,3gp,3g2,mj2``; any name of it matches.
ALLOWED_DEMUXERS = (
    "wav", "w64", "aiff", "caf", "au", "flac", "wv", "ape", "tta", "mp3", "aac", "ac3", "eac3", "dts",
    "truehd", "mlp", "loas", "amr", "ogg", "mov", "matroska", "asf", "avi", "flv", "mpegts", "mpeg",
    "mxf", "nut",
)
#: Only local files (ffmpeg's ``file`` protocol): no network, no subfile/concat protocols.
PROTOCOL_WHITELIST = "file"
#: Default longest media, seconds: a feature film with room to spare.
DEFAULT_MAX_DURATION = 4 * 3600.0
MAX_DURATION_ENV = "DIARKIT_MAX_DURATION"
_SUPPORTED_HINT = "send wav, flac, mp3, m4a, ogg/opus, mp4, mkv or mov"
_NOT_ON_WHITELIST = re.compile(r"\[(\w+) @ 0x[0-9a-f]+\] Format not on whitelist")
_READ_CHUNK = 1 << 20


class MediaTooLongError(MediaError):
    """The media lasts longer than the configured limit (decoding it would need too much memory)."""

    status = 413
    kind = "media_too_long"


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

    @property
    def demuxer(self) -> str:
        """The name that forces the probed demuxer with ``-f``."""
        return self.container.split(",", 1)[0]


def max_duration() -> float | None:
    """The duration limit in seconds: ``DIARKIT_MAX_DURATION`` (0 turns it off), else 4 h."""
    value = os.environ.get(MAX_DURATION_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_DURATION
    try:
        limit = float(value)
    except ValueError:
        raise MediaError(f"{MAX_DURATION_ENV} must be a number of seconds, not {value!r}") from None
    return limit if limit > 0 else None


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


def _url(path: Path) -> str:
    """An explicit ``file:`` URL: a name like ``concat:a|b`` or ``http:x`` stays a file name."""
    return "file:" + os.path.abspath(path)


def _restrictions() -> list[str]:
    return ["-protocol_whitelist", PROTOCOL_WHITELIST, "-format_whitelist", ",".join(ALLOWED_DEMUXERS)]


def probe(path: str | os.PathLike, *, limit: float | None = -1.0) -> MediaInfo:
    """Describe the first audio stream, or explain why there is none or why it is refused.

    ``limit`` is the longest duration accepted in seconds (default: ``max_duration()``;
    None: no limit).
    """
    path = Path(path)
    _check_readable(path)
    cmd = [
        _ffmpeg_binary("ffprobe"), "-v", "error", *_restrictions(), "-print_format", "json",
        "-show_format", "-show_streams", "-i", _url(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        refused = _NOT_ON_WHITELIST.search(stderr)
        if refused:
            raise MediaError(
                f"is not accepted media: its format ({refused.group(1)}) is a playlist, list or manifest "
                "that makes the decoder open other files or URLs",
                path=str(path), hint=_SUPPORTED_HINT,
            )
        reason = _last_line(proc.stderr).replace(_url(path), str(path)) or "ffprobe could not read it"
        raise MediaError(f"not a readable audio or video file ({reason})", path=str(path), hint=_SUPPORTED_HINT)
    info = json.loads(proc.stdout or b"{}")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise MediaError(
            "has no audio track",
            path=str(path),
            hint="check that the export includes the dialogue track",
        )
    stream = streams[0]
    duration = _seconds(stream.get("duration")) or _seconds(info.get("format", {}).get("duration"))
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    media = MediaInfo(
        path=str(path),
        container=info.get("format", {}).get("format_name", ""),
        audio_codec=stream.get("codec_name", ""),
        sample_rate=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
        duration=duration,
        video_frame_rate=(video.get("avg_frame_rate") or video.get("r_frame_rate")) if video else None,
        video_timecode=((video or {}).get("tags", {}).get("timecode")
                        or info.get("format", {}).get("tags", {}).get("timecode")),
    )
    limit = max_duration() if limit == -1.0 else limit
    if limit is not None and media.duration is not None and media.duration > limit:
        raise _too_long(path, media.duration, limit)
    return media


def _seconds(value) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if np.isfinite(seconds) and seconds > 0 else None


def _too_long(path: Path, duration: float, limit: float) -> MediaTooLongError:
    return MediaTooLongError(
        f"lasts {_hms(duration)}, longer than the {_hms(limit)} limit",
        path=str(path), hint=f"split it, or raise the limit with {MAX_DURATION_ENV}=<seconds>",
    )


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def decode(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, *, limit: float | None = -1.0) -> np.ndarray:
    """Return the first audio track as mono float32 at ``sample_rate`` (``decode_media`` also
    gives the probe's MediaInfo)."""
    return decode_media(path, sample_rate, limit=limit)[0]


def decode_media(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, *,
                 limit: float | None = -1.0) -> tuple[np.ndarray, MediaInfo]:
    """The first audio track as mono float32 at ``sample_rate``, and what ffprobe said of the file.

    Stereo and multichannel tracks are downmixed by ffmpeg. A stream that is cut short
    (truncated upload) is an error, not a silently shorter result. The samples go from
    ffmpeg's stdout straight into one array sized from the probed duration, so decoding
    needs no more memory than the float32 audio itself; more samples than ``limit``
    seconds (default ``max_duration()``) stop the decoder.
    """
    path = Path(path)
    limit = max_duration() if limit == -1.0 else limit
    info = probe(path, limit=limit)
    cmd = [
        _ffmpeg_binary("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-xerror",
        *_restrictions(), "-f", info.demuxer, "-i", _url(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]
    logger.debug("decoding %s (%s, %s, %s Hz, %s ch)", path, info.container,
                 info.audio_codec, info.sample_rate, info.channels)
    max_samples = int(limit * sample_rate) + sample_rate if limit is not None else None
    expected = int((info.duration or 60.0) * sample_rate * 1.01) + sample_rate
    if max_samples is not None:
        expected = min(expected, max_samples)
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        try:
            audio, count, over = _read_samples(proc.stdout, expected, max_samples)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            returncode = proc.wait()
        if over:
            raise _too_long(path, count / sample_rate, limit)
        stderr.seek(0)
        errors = stderr.read()
    if returncode != 0:
        reason = _last_line(errors).replace(_url(path), str(path)) or "ffmpeg failed"
        raise MediaError(
            f"could not decode the audio ({reason})",
            path=str(path),
            hint="the file may be truncated or corrupt; re-export it",
        )
    if count == 0:
        raise MediaError("decoded to no audio samples", path=str(path),
                         hint="the file may be truncated or corrupt; re-export it")
    if info.duration and count / sample_rate < 0.5 * info.duration - 1.0:
        raise MediaError(
            f"decoded only {count / sample_rate:.1f} s of {info.duration:.1f} s",
            path=str(path), hint="the file is truncated; re-upload it",
        )
    audio.resize(count, refcheck=False)  # shrinks in place
    for start in range(0, count, _READ_CHUNK):  # in blocks: a whole-array mask would add 25% memory
        block = audio[start:start + _READ_CHUNK]
        if not np.isfinite(block).all():
            np.nan_to_num(block, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return audio, info


def _read_samples(stream, expected: int, max_samples: int | None) -> tuple[np.ndarray, int, bool]:
    """Read float32 samples into a growing array: (array, samples read, over the limit)."""
    audio = np.empty(max(expected, 1), dtype=np.float32)
    filled = 0  # bytes
    while True:
        if filled == audio.nbytes:
            if max_samples is not None and audio.size >= max_samples:
                return audio, audio.size, bool(stream.read(1))
            size = audio.size + max(audio.size // 2, 60 * SAMPLE_RATE)
            audio.resize(min(size, max_samples) if max_samples is not None else size, refcheck=False)
        view = memoryview(audio).cast("B")
        try:
            got = stream.readinto(view[filled:filled + _READ_CHUNK])
        finally:
            view.release()
        if not got:
            return audio, filled // 4, False
        filled += got


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def pooled_speech(waveform: np.ndarray, runs: np.ndarray, limit: int) -> np.ndarray:
    """One voice's speech for a pooled embedding: the samples of ``runs`` ((start, end) in
    order, disjoint), or above ``limit`` samples ten pieces of it spread evenly (a voice is
    steady well before that; the encoder's spectrogram stays small).

    Cut from the runs without a sample mask or the whole speech: on an hour both are
    file-sized (a speaker's mask 55 MiB), for every speaker the diarizer's checks and the
    voice library pool.
    """
    lengths = runs[:, 1] - runs[:, 0]
    total = int(lengths.sum())
    if total <= limit:
        return np.concatenate([waveform[a:b] for a, b in runs]) if len(runs) else waveform[:0].copy()
    starts = np.concatenate([[0], np.cumsum(lengths)])  # each run's place in the pooled speech

    def span(lo: int, hi: int) -> list[np.ndarray]:  # pooled positions [lo, hi) from the file
        out = []
        for r in range(int(np.searchsorted(starts, lo, side="right")) - 1, len(runs)):
            if starts[r] >= hi:
                break
            a, b = max(lo, starts[r]), min(hi, starts[r + 1])
            out.append(waveform[runs[r, 0] + a - starts[r]:runs[r, 0] + b - starts[r]])
        return out

    piece, take = total // 10, limit // 10
    parts = [part for i in range(10) for part in span(i * piece, i * piece + take)]
    return np.concatenate(parts) if parts else waveform[:0].copy()
