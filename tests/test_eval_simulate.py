"""simulate: same seed -> same bytes; the RTTM is exactly what was placed in the audio."""

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]

from eval.readers import read_rttm, read_uem  # noqa: E402
from eval.simulate import SAMPLE_RATE, SimConfig, SimulationError, load_utterance, simulate  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "librispeech-test-other"


@pytest.fixture(scope="module")
def data():
    if not DATA.is_dir():
        pytest.skip(f"../shared/data/librispeech-test-other not found: {DATA} is absent, simulate needs it")
    return DATA


def config(data, out, **kw):
    base = dict(data=str(data), out=str(out), num_files=2, min_speakers=2, max_speakers=3, turns=5, seed=7)
    base.update(kw)
    return SimConfig(**base)


def test_same_seed_same_bytes(data, tmp_path):
    simulate(config(data, tmp_path / "a"))
    simulate(config(data, tmp_path / "b"))
    simulate(config(data, tmp_path / "c", seed=8))
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["groups.tsv", "sim000.rttm", "sim000.uem", "sim000.wav", "sim001.rttm", "sim001.uem",
                     "sim001.wav", "simulate.json"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "sim000.wav").read_bytes() != (tmp_path / "c" / "sim000.wav").read_bytes()


def test_conversation_does_not_depend_on_num_files(data, tmp_path):
    simulate(config(data, tmp_path / "one", num_files=1))
    simulate(config(data, tmp_path / "two", num_files=2))
    assert (tmp_path / "one" / "sim000.wav").read_bytes() == (tmp_path / "two" / "sim000.wav").read_bytes()


def test_rttm_matches_placed_audio(data, tmp_path):
    """No overlap, no pause split: each RTTM turn holds its source utterance sample for sample,
    and there is exact silence elsewhere."""
    out = tmp_path / "s"
    convs = simulate(config(data, out, overlap_ratio=0.0, num_files=1, turns=4, split_pauses=0))
    conv = convs[0]
    audio, sr = sf.read(str(out / "sim000.wav"), dtype="float64")
    assert sr == SAMPLE_RATE and audio.ndim == 1 and len(audio) == conv.num_samples
    turns = read_rttm(out / "sim000.rttm")["sim000"].turns
    assert [(round(t.start * sr), round(t.end * sr), t.speaker) for t in turns] == \
        [(p.start, p.end, p.speaker) for p in conv.placements]
    assert len({t.speaker for t in turns}) == len(conv.speakers) >= 2
    covered = np.zeros(len(audio), dtype=bool)
    for p in conv.placements:
        source, offset = load_utterance(data / p.source, trim_db=40.0)
        assert offset == p.source_offset and len(source) == p.length
        placed = audio[p.start:p.end]
        assert np.max(np.abs(placed - conv.gain * source)) < 2 / 32768  # 16-bit quantization
        covered[p.start:p.end] = True
    assert not np.any(audio[~covered])  # exact silence between turns
    assert read_uem(out / "sim000.uem") == {"sim000": [(0.0, round(len(audio) / sr, 3))]}


def test_pauses_inside_utterances_are_not_speech(data, tmp_path):
    out = tmp_path / "p"
    conv = simulate(config(data, out, overlap_ratio=0.0, num_files=1, turns=10, split_pauses=0.3))[0]
    audio, sr = sf.read(str(out / "sim000.wav"), dtype="float64")
    turns = read_rttm(out / "sim000.rttm")["sim000"].turns
    spans = [(round(t.start * sr), round(t.end * sr), t.speaker) for t in turns]
    assert len(spans) > len(conv.placements)  # some utterance has a pause >= 0.3 s
    for p in conv.placements:
        mine = [(a, b) for a, b, spk in spans if p.start <= a < p.end]
        assert all(spk == p.speaker for a, b, spk in spans if p.start <= a < p.end)
        assert mine[0][0] == p.start and mine[-1][1] == p.end  # trimmed edges are speech
        assert mine == [(p.start + a, p.start + b) for a, b in p.speech]
        peak_frame = max(np.sqrt(np.mean(audio[i:i + 160] ** 2)) for i in range(p.start, p.end - 159, 160))
        for (_, gap_start), (gap_end, _) in zip(mine, mine[1:]):
            assert gap_end - gap_start >= 0.3 * sr
            gap = audio[gap_start:gap_end]
            frames = gap[: len(gap) // 160 * 160].reshape(-1, 160)
            levels = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-10)
            assert np.all(levels < 20 * np.log10(peak_frame) - 3)  # a pause, well under the voice


def test_speech_regions_on_a_synthetic_signal():
    from eval.simulate import speech_regions

    tone = 0.5 * np.sin(np.arange(SAMPLE_RATE) * 2 * np.pi * 200 / SAMPLE_RATE)  # 1 s
    quiet = np.full(SAMPLE_RATE // 2, 1e-4)  # 0.5 s, ~70 dB down
    short = np.full(SAMPLE_RATE // 10, 1e-4)  # 0.1 s: too short to be a pause
    audio = np.concatenate([tone, quiet, tone, short, tone])
    assert speech_regions(audio, 30, 0.3) == [(0, 16000), (24000, len(audio))]
    assert speech_regions(audio, 30, 0) == [(0, len(audio))]


def test_overlap_ratio_is_reached_and_reported(data, tmp_path):
    from pyannote.core import Annotation, Segment

    conv = simulate(config(data, tmp_path / "o", overlap_ratio=0.1, turns=8, num_files=1))[0]
    ann = Annotation()
    for i, t in enumerate(read_rttm(tmp_path / "o" / "sim000.rttm")["sim000"].turns):
        ann[Segment(t.start, t.end), i] = t.speaker
    speech = ann.get_timeline().support().duration()
    overlap = ann.get_overlap().duration()
    assert overlap / speech == pytest.approx(conv.overlap_ratio, abs=1e-3)
    assert 0.05 < conv.overlap_ratio < 0.13  # target 0.1, moved a little by pauses left out of the RTTM
    edges = sorted([(seg.start, 1) for seg, _ in ann.itertracks()] + [(seg.end, -1) for seg, _ in ann.itertracks()])
    assert np.cumsum([delta for _, delta in edges]).max() <= 2  # never three voices at once


def test_bad_options(data, tmp_path):
    with pytest.raises(SimulationError, match="max-speakers"):
        simulate(config(data, tmp_path / "x", min_speakers=2, max_speakers=11))
    with pytest.raises(SimulationError, match="not found"):
        simulate(config(tmp_path / "missing", tmp_path / "x"))
