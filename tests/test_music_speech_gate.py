"""Music is not speech: no speaker and no turn where only music plays (issue 20).

The music is General MIDI written by eval.music and rendered by fluidsynth with the
FluidR3_GM soundfont (real instrument samples); the tests skip when those are absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from diarkit.audio import SAMPLE_RATE
from diarkit.speech import SILERO_STEP, SpeechGateOptions, fused_mask, gate_segmentation, speech_mask, support_mask
from eval import music as music_set


def _music(seconds: float, seed: int, tmp_path) -> np.ndarray:
    try:
        music_set.check_tools()
    except music_set.MusicError as exc:
        pytest.skip(str(exc))
    audio = music_set.make_music(np.random.default_rng(seed), seconds, tmp_path)
    return (audio * 0.1 / np.sqrt(np.mean(audio**2))).astype(np.float32)  # -20 dBFS RMS


@pytest.fixture(scope="module")
def music_20s(tmp_path_factory) -> np.ndarray:
    return _music(20.0, 3, tmp_path_factory.mktemp("music"))


def test_music_alone_gives_no_speaker_and_no_turn(pipeline, music_20s):
    result = pipeline.transcribe(music_20s, uri="music")
    assert result.num_speakers == 0
    assert result.turns == []
    assert result.segments == []


def test_without_the_gate_the_same_music_becomes_turns(pipeline, music_20s):
    """The problem the gate solves is real on this music: the segmentation alone calls it speech."""
    ungated = pipeline.diarizer(music_20s, pipeline.segmenter(music_20s), uri="music")
    assert sum(t.end - t.start for t in ungated.turns) > 2.0


def test_sample_after_15_s_of_music_keeps_two_speakers_and_no_turn_in_the_music(pipeline, sample_wav, tmp_path):
    speech, sr = sf.read(str(sample_wav), dtype="float32")
    assert sr == SAMPLE_RATE
    level = float(np.sqrt(np.mean(speech[np.abs(speech) > 1e-3] ** 2)))
    music = _music(15.0, 5, tmp_path) * (level / 0.1)  # as loud as the speech
    result = pipeline.transcribe(np.concatenate([music, speech]), uri="music_sample")
    assert result.num_speakers == 2
    assert result.turns, "the sample's speech must still give turns"
    assert min(t.start for t in result.turns) >= 15.0
    assert all(w.start >= 15.0 for w in result.words)


def test_speech_mask_hysteresis_padding_and_gaps():
    probs = np.zeros(100)
    probs[20:30] = 0.9  # speech
    probs[30:33] = 0.4  # above offset: still speech
    probs[38:45] = 0.9  # a gap of 5 frames (0.16 s) < min_gap: filled
    probs[80:82] = 0.45  # never reaches onset: not speech
    mask = speech_mask(probs, SpeechGateOptions(onset=0.5, offset=0.35, pad=2 * SILERO_STEP, min_gap=0.3))
    assert not mask[:18].any() and mask[18:47].all() and not mask[47:].any()


def test_gate_zeroes_segmentation_frames_outside_speech(pipeline):
    audio = np.zeros(10 * SAMPLE_RATE, dtype=np.float32)
    segmentation = pipeline.segmenter(audio)
    segmentation.chunks.data[:] = 1.0
    mask = np.zeros(int(10 / SILERO_STEP) + 1, dtype=bool)
    mask[int(4 / SILERO_STEP):int(6 / SILERO_STEP)] = True
    gated = gate_segmentation(segmentation, mask)
    chunks = gated.chunks
    for c in range(chunks.data.shape[0]):
        start = chunks.sliding_window[c].start
        times = start + np.array([segmentation.frames[f].middle for f in range(chunks.data.shape[1])])
        inside = (times > 4.05) & (times < 5.95)
        outside = (times < 3.95) | (times > 6.05)
        assert np.all(chunks.data[c][inside] == 1.0)
        assert np.all(chunks.data[c][outside] == 0.0)


def test_gate_also_zeroes_a_powerset_models_own_speech_probability(pipeline):
    """Powerset models (production profiles) feed the VAD from their own speech output: it is gated too."""
    from dataclasses import replace

    from diarkit.compat.pyannote import SlidingWindowFeature

    audio = np.zeros(10 * SAMPLE_RATE, dtype=np.float32)
    segmentation = pipeline.segmenter(audio)
    chunks = segmentation.chunks
    speech = SlidingWindowFeature(np.ones(chunks.data.shape[:2] + (1,), dtype=np.float32), chunks.sliding_window)
    mask = np.zeros(int(10 / SILERO_STEP) + 1, dtype=bool)
    mask[int(4 / SILERO_STEP):int(6 / SILERO_STEP)] = True
    gated = gate_segmentation(replace(segmentation, speech=speech), mask)
    assert gated.speech is not None and gated.speech.data.shape == speech.data.shape
    for c in range(speech.data.shape[0]):
        start = chunks.sliding_window[c].start
        times = start + np.array([segmentation.frames[f].middle for f in range(speech.data.shape[1])])
        assert np.all(gated.speech.data[c][(times > 4.05) & (times < 5.95)] == 1.0)
        assert np.all(gated.speech.data[c][(times < 3.95) | (times > 6.05)] == 0.0)
    assert np.all(speech.data == 1.0), "the input is left as it was"


def test_fused_gate_keeps_quiet_speech_with_weak_silero_support_and_drops_unsupported_activity():
    """Far-field speech: silero 0.05-0.3 (never the strict onset); music: silero ~0 for seconds."""
    n = int(20 / SILERO_STEP)
    probs = np.zeros(n)
    seg = np.zeros(n)
    quiet = slice(int(2 / SILERO_STEP), int(6 / SILERO_STEP))  # 4 s of quiet speech
    seg[quiet] = 0.9
    probs[quiet] = 0.01
    probs[quiet][::2] = 0.15  # weak evidence on half the frames (never 0.35)
    music = slice(int(10 / SILERO_STEP), int(16 / SILERO_STEP))  # 6 s the segmentation calls speech
    seg[music] = 0.9
    probs[music] = 0.01
    probs[int(13 / SILERO_STEP)] = 0.2  # one isolated blip inside the music
    options = SpeechGateOptions(support=0.05)
    assert not speech_mask(probs, options).any(), "the strict tier alone loses the quiet speech"
    mask = fused_mask(probs, seg, options)
    assert mask[quiet].mean() > 0.95
    assert not mask[music].any(), "a region with support on under region_support of its frames is dropped"
    assert not mask[:int(2 / SILERO_STEP)].any() and not mask[int(6.6 / SILERO_STEP):int(10 / SILERO_STEP)].any()


def test_fused_gate_weak_tier_needs_nearby_evidence_and_can_be_turned_off():
    n = int(10 / SILERO_STEP)
    probs = np.zeros(n)
    seg = np.full(n, 0.9)  # one long segmentation region
    probs[: int(5 / SILERO_STEP)][::4] = 0.1  # evidence on 25% of the first half
    options = SpeechGateOptions(support=0.05, region_support=0.1, support_window=1.0)
    mask = support_mask(probs, seg, options)
    assert mask[: int(5 / SILERO_STEP)].all()
    assert not mask[int(5.6 / SILERO_STEP):].any(), "more than half a window from any evidence: dropped"
    off = SpeechGateOptions(support=None)
    assert not fused_mask(probs, seg, off).any()
    assert np.array_equal(fused_mask(probs, None, options), speech_mask(probs, options))
