"""``python -m eval floor`` on the shipped sample: real segmentation, oracle clustering, pyannote.metrics."""

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from eval.__main__ import main  # noqa: E402
from eval.floor import MODES, floor_dataset  # noqa: E402


def test_floor_rows_on_the_sample(tmp_path, model_dir, sample_wav, sample_rttm):
    shutil.copy(sample_wav, tmp_path / "sample.wav")
    shutil.copy(sample_rttm, tmp_path / "sample.rttm")
    rows, failed = floor_dataset(tmp_path, [0.3, 0.45], model_dir=model_dir)
    assert failed == []
    rows = {(r.threshold, r.mode): r for r in rows}
    assert len(rows) == 2 * len(MODES)
    for threshold in (0.3, 0.45):
        own, oracle, oracle_count = (rows[(threshold, m)] for m in MODES)
        assert own.files == ["sample"] and own.reference_s > 20  # ~25 s of reference speech
        # the same segmentation and count: only the speaker labels differ, so miss and false alarm agree
        assert abs(own.missed_s - oracle.missed_s) < 0.5 and abs(own.false_alarm_s - oracle.false_alarm_s) < 0.5
        assert oracle.count_silent_frames == own.count_silent_frames
        # the reference count leaves no count error, and the error only the count caused is gone
        assert oracle_count.count_silent_frames == oracle_count.count_overlap_frames == 0
        assert oracle_count.count_extra_frames == 0
        assert oracle_count.missed_s < oracle.missed_s
        # miss + false alarm depend on the count only: a floor under any clustering's DER
        assert own.count_floor <= own.der and abs(own.count_floor - oracle.count_floor) < 2.0
        assert oracle_count.count_floor < own.count_floor
    # a lower threshold counts more speech: fewer reference frames counted as silence
    assert rows[(0.3, MODES[1])].count_silent_frames <= rows[(0.45, MODES[1])].count_silent_frames


def test_floor_command_writes_table_and_rejects_bad_thresholds(tmp_path, model_dir, sample_wav, sample_rttm,
                                                               capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sample_wav, data / "sample.wav")
    shutil.copy(sample_rttm, data / "sample.rttm")
    out = tmp_path / "floor.md"
    assert main(["floor", str(data), "--model-dir", str(model_dir), "--out", str(out)]) == 0
    table = out.read_text()
    assert table.count("| 0.45 |") == len(MODES) and "oracle clustering + oracle count" in table
    assert not list(tmp_path.glob("*.tmp"))

    # one unreadable file: reported, exit 1, the other file still scored
    (data / "broken.wav").write_bytes(b"RIFF not really a wav")
    shutil.copy(sample_rttm, data / "broken.rttm")
    capsys.readouterr()
    assert main(["floor", str(data), "--model-dir", str(model_dir), "--out", str(out)]) == 1
    assert "FAILED" in capsys.readouterr().err and "broken.wav" in out.read_text()
    assert "1 files" in out.read_text()
    (data / "broken.wav").unlink()

    assert main(["floor", str(data), "--thresholds", "0.5,abc"]) == 2
    assert "--thresholds" in capsys.readouterr().err
    assert main(["floor", str(data), "--min-duration-off", "-1"]) == 2
    assert main(["floor", str(tmp_path / "missing")]) == 2
