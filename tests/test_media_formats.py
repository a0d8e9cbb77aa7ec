"""Every container and codec users send decodes to 16 kHz mono float32."""

from __future__ import annotations

import numpy as np
import pytest

from diarkit import audio

NAMES = ["pcm16.wav", "float32.wav", "stereo44k.wav", "sample.flac", "sample.mp3", "sample.m4a",
         "sample.ogg", "sample.opus", "video.mp4", "video.mkv", "video.mov"]


@pytest.mark.parametrize("name", NAMES)
def test_format_decodes(media_dir, sample_wav, name):
    reference = audio.decode(sample_wav)
    decoded = audio.decode(media_dir / name)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    # codecs add priming samples or padding; the length stays within 0.2 s of the source
    assert abs(decoded.size - reference.size) < 0.2 * audio.SAMPLE_RATE
    assert 0.01 < float(np.sqrt(np.mean(decoded**2))) < 1.0
    # same signal: energy envelopes over 100 ms windows correlate strongly
    n = min(decoded.size, reference.size) // 1600 * 1600
    env_a = np.sqrt((decoded[:n].reshape(-1, 1600) ** 2).mean(axis=1))
    env_b = np.sqrt((reference[:n].reshape(-1, 1600) ** 2).mean(axis=1))
    assert np.corrcoef(env_a, env_b)[0, 1] > 0.9


def test_stereo_is_downmixed(media_dir):
    info = audio.probe(media_dir / "stereo44k.wav")
    assert info.channels == 2 and info.sample_rate == 44100
    assert audio.decode(media_dir / "stereo44k.wav").ndim == 1


def test_video_transcribes_like_audio(pipeline, media_dir):
    result = pipeline.transcribe(media_dir / "video.mkv")
    assert result.num_speakers == 2
    assert "chicago" in " ".join(s.text.lower() for s in result.segments)
