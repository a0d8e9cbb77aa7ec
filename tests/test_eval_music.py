"""eval music: same seed -> same bytes; references shifted exactly by the inserted music."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval import music
from eval.readers import read_rttm


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    try:
        music.check_tools()
    except music.MusicError as exc:
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp("sim")
    t = np.arange(12 * music.SAMPLE_RATE) / music.SAMPLE_RATE
    audio = 0.1 * np.sin(2 * np.pi * 220 * t) * ((t % 6) < 4)  # "speech" 0-4 s and 6-10 s
    sf.write(str(folder / "sim000.wav"), audio, music.SAMPLE_RATE, subtype="PCM_16")
    (folder / "sim000.rttm").write_text("SPEAKER sim000 1 0.000 4.000 <NA> <NA> A <NA> <NA>\n"
                                        "SPEAKER sim000 1 6.000 4.000 <NA> <NA> B <NA> <NA>\n")
    (folder / "groups.tsv").write_text("sim000\t2spk\n")
    return folder


@pytest.mark.parametrize("kind", music.KINDS)
def test_same_seed_same_bytes(sim, tmp_path, kind):
    for name in ("a", "b"):
        music.make_set(music.MusicConfig(sim=str(sim), out=str(tmp_path / name), kind=kind, seed=1))
    for f in ("sim000.wav", "sim000.rttm", "sim000.uem", "groups.tsv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_gaps_shift_the_reference_by_the_inserted_music(sim, tmp_path):
    music.make_set(music.MusicConfig(sim=str(sim), out=str(tmp_path), kind="gaps", seed=1, lead=8.0, between=6.0))
    turns = sorted((t.start, t.end, t.speaker) for t in read_rttm(tmp_path / "sim000.rttm")["sim000"].turns)
    assert turns == [(8.0, 12.0, "A"), (20.0, 24.0, "B")]  # the middle pause (4-6 s) got 6 s of music
    audio, _ = sf.read(str(tmp_path / "sim000.wav"))
    assert len(audio) == (12 + 8 + 6) * music.SAMPLE_RATE
    lead = audio[: 8 * music.SAMPLE_RATE]
    assert np.sqrt(np.mean(lead**2)) > 0.01  # music is there, alone
