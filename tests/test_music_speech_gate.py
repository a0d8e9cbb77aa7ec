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


def _diarization(turns, embeddings=None):
    from diarkit.diarization.diarizer import Diarization
    from diarkit.result import SpeakerTurn

    turns = [SpeakerTurn(s, e, k) for s, e, k in turns]
    return Diarization(turns=turns, exclusive_turns=list(turns), speaker_embeddings=embeddings)


def test_a_speaker_without_confident_speech_is_dropped_and_labels_stay_consecutive():
    from diarkit.speech import SpeechDecision, confirm_speakers

    n = int(20 / SILERO_STEP)
    probs = np.full(n, 0.1)  # weak everywhere (what the fused tier lets through)
    probs[int(8 / SILERO_STEP):int(12 / SILERO_STEP)] = 0.9  # 4 s of confident speech
    decision = SpeechDecision(probs=probs, mask=np.ones(n, dtype=bool))
    found = _diarization([(1.0, 5.0, "SPEAKER_00"), (8.0, 10.0, "SPEAKER_01"), (10.0, 12.0, "SPEAKER_02")],
                         embeddings=np.arange(3, dtype=np.float32)[:, None])
    kept = confirm_speakers(found, decision, SpeechGateOptions())
    assert [(t.start, t.speaker) for t in kept.turns] == [(8.0, "SPEAKER_00"), (10.0, "SPEAKER_01")]
    assert [t.speaker for t in kept.exclusive_turns] == ["SPEAKER_00", "SPEAKER_01"]
    assert kept.speaker_embeddings[:, 0].tolist() == [1.0, 2.0], "the embeddings follow their speakers"
    assert [t.speaker for t in kept.rejected_turns] == ["SPEAKER_00"] and kept.rejected_turns[0].start == 1.0
    # a request for 3 speakers is not overruled, and 0 turns the check off
    assert len({t.speaker for t in confirm_speakers(found, decision, SpeechGateOptions(), num_speakers=3).turns}) == 3
    off = confirm_speakers(found, decision, SpeechGateOptions(min_confident_speech=0))
    assert off.turns == found.turns


def test_words_outside_turns_and_confident_speech_are_unsupported():
    from diarkit.result import SpeakerTurn, Word
    from diarkit.speech import SpeechDecision, unsupported_words

    n = int(20 / SILERO_STEP)
    probs = np.full(n, 0.1)
    probs[int(12 / SILERO_STEP):int(14 / SILERO_STEP)] = 0.9
    mask = np.zeros(n, dtype=bool)
    mask[int(2 / SILERO_STEP):int(5 / SILERO_STEP)] = True  # weak-tier music, no turn left in it
    mask[int(10 / SILERO_STEP):int(15 / SILERO_STEP)] = True  # speech with confident frames
    decision = SpeechDecision(probs=probs, mask=mask)
    turns = [SpeakerTurn(12.0, 14.0, "SPEAKER_00")]
    rejected = [SpeakerTurn(4.0, 4.5, "SPEAKER_01"), SpeakerTurn(17.5, 18.0, "SPEAKER_01")]  # music "speaker"
    words = [Word("Yeah,", 3.0, 3.2), Word("quiet", 10.5, 10.8), Word("hello", 12.5, 12.9), Word("far", 18.0, 18.3),
             Word("alone", 7.0, 7.3)]
    unsupported = unsupported_words(words, decision, turns, rejected, SpeechGateOptions())
    # words where the rejected speaker was and no confident speech go; the one beside confident
    # speech stays, and so does a word with no turn at all near it (the diarization missed it)
    assert [w.word for w in unsupported] == ["Yeah,", "far"]
    assert unsupported_words(words, decision, turns, [], SpeechGateOptions()) == []
    assert unsupported_words(words, decision, turns, rejected, SpeechGateOptions(min_confident_speech=0)) == []


def test_ungated_chunks_travel_for_the_embeddings_and_turns_stay_gated(pipeline, music_20s, sample_wav):
    """``embed_ungated``: embeddings read the segmentation before the gate; turns still only where the gate keeps speech."""
    speech, _ = sf.read(str(sample_wav), dtype="float32")
    audio = np.concatenate([music_20s, speech[: 15 * SAMPLE_RATE]])
    segmentation = pipeline.segmenter(audio)
    mask = np.zeros(int(len(audio) / SAMPLE_RATE / SILERO_STEP) + 1, dtype=bool)
    mask[int(20 / SILERO_STEP):] = True  # the speech only
    plain = gate_segmentation(segmentation, mask)
    assert plain.ungated is None
    gated = gate_segmentation(segmentation, mask, keep_ungated=True)
    assert gated.ungated is segmentation.chunks and np.array_equal(gated.chunks.data, plain.chunks.data)
    found = pipeline.diarizer(audio, gated, uri="ungated")
    assert found.turns and min(t.start for t in found.turns) >= 19.9, "no turn in the gated-out music"

    import torch

    from diarkit.compat.pyannote import binarize
    from diarkit.diarization.diarizer import LocalSpeakerDiarization

    inner = pipeline.diarizer.pipeline
    binary = binarize(gated.chunks, onset=inner.segmentation.threshold, initial_state=False)
    file = {"waveform": torch.from_numpy(audio).unsqueeze(0), "sample_rate": SAMPLE_RATE, "uri": "ungated"}
    ungated_active = binarize(segmentation.chunks, onset=inner.segmentation.threshold, initial_state=False).data
    music_chunk = int(np.argmax(ungated_active[:20].sum(axis=(1, 2)) > 20))  # a chunk of music only, active ungated
    assert binary.data[music_chunk].sum() == 0 and ungated_active[music_chunk].sum() > 20
    with torch.inference_mode():
        from_gated = inner.get_embeddings(file, binary, exclude_overlap=True)
        from_ungated = inner.get_embeddings({**file, LocalSpeakerDiarization.UNGATED: gated.ungated}, binary,
                                            exclude_overlap=True)
    speaker = int(np.argmax(ungated_active[music_chunk].sum(axis=0)))
    assert np.isnan(from_gated[music_chunk, speaker]).all(), "nothing to embed through the gated mask"
    assert np.isfinite(from_ungated[music_chunk, speaker]).all(), "the ungated mask is read"


def test_quiet_real_speech_with_little_confident_silero_keeps_its_speaker(pipeline, sample_wav):
    """The sample's first 8 s: silero is confident on only ~0.35 s of it; it is still a speaker."""
    speech, _ = sf.read(str(sample_wav), dtype="float32")
    result = pipeline.transcribe(speech[: 8 * SAMPLE_RATE], uri="quiet")
    assert result.num_speakers >= 1 and result.turns


def test_silero_pass_does_not_copy_the_file():
    """The gate's silero pass holds a batch at a time: its memory does not grow with the file.

    It used to pad a copy of the whole file to whole frames first (230 MB on an hour).
    """
    import os
    import subprocess
    import sys

    from conftest import REPO

    script = (
        "import resource, sys\n"
        "import numpy as np\n"
        "from diarkit.speech import SileroSpeech\n"
        "detector = SileroSpeech()\n"
        "detector(np.zeros(16000 * 60 + 100, dtype=np.float32))  # the session's own buffers, once\n"
        "audio = np.empty(16000 * 1200 + 100, dtype=np.float32)  # 20 min, not whole frames\n"
        "np.random.default_rng(0).standard_normal(dtype=np.float32, out=audio)\n"
        "audio *= 0.05\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "probs = detector(audio)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print(audio.nbytes, len(probs), after - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert proc.returncode == 0, proc.stderr
    nbytes, frames, growth = map(int, proc.stdout.split())
    assert frames == -(-(16000 * 1200 + 100) // 512)
    assert growth < 0.5 * nbytes, f"silero grew {growth / 2**20:.0f} MiB over {nbytes / 2**20:.0f} MiB of audio"
