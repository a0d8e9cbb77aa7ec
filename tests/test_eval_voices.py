"""eval voices: the naming metrics on hand-made turns, and the report re-made from saved scores."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import REPO
from eval.__main__ import main
from eval.voices import score_episode, totals

REF = [(0.0, 10.0, "lsA"), (10.0, 20.0, "lsB"), (20.0, 30.0, "lsX")]  # A, B enrolled; X never


def test_right_names_keep_der_and_count_named_speech():
    hyp = [(0.0, 10.0, "SPEAKER_00"), (10.0, 15.0, "SPEAKER_01"), (15.0, 20.0, "SPEAKER_02"),
           (20.0, 30.0, "SPEAKER_02")]  # B half under the stranger's speaker
    e = score_episode("ep", 30.0, REF, hyp, {"SPEAKER_00": "lsA", "SPEAKER_01": "lsB"}, {"lsA", "lsB"})
    assert e.enrolled_speech == pytest.approx(20.0) and e.enrolled_named == pytest.approx(15.0)
    assert e.enrolled_ceiling == pytest.approx(15.0) and e.enrolled_wrong == 0
    assert e.strangers == 1 and e.strangers_named == 0
    assert e.der_plain == pytest.approx(5.0) and e.der_named == pytest.approx(5.0)


def test_wrong_names_cost_der_and_strangers_named_are_counted():
    hyp = [(0.0, 10.0, "SPEAKER_00"), (10.0, 20.0, "SPEAKER_01"), (20.0, 30.0, "SPEAKER_02")]
    e = score_episode("ep", 30.0, REF, hyp, {"SPEAKER_00": "lsB", "SPEAKER_02": "lsA"}, {"lsA", "lsB"})
    assert e.der_plain == pytest.approx(0.0)
    # both named speakers are the wrong voices, and they claimed the voice the unnamed one is
    assert e.der_named == pytest.approx(30.0)
    assert e.enrolled_named == 0 and e.enrolled_wrong == pytest.approx(10.0)  # A's speech named lsB
    assert e.strangers_named == 1 and e.stranger_named_speech == pytest.approx(10.0)
    overall = totals([e])
    assert overall["strangers_named"] == 1.0 and overall["der_named"] > overall["der_plain"]


def test_lost_speech_is_split_into_missed_and_overlap():
    ref = REF + [(8.0, 10.0, "lsX")]  # X talks over the end of A
    hyp = [(2.0, 10.0, "SPEAKER_00"), (10.0, 20.0, "SPEAKER_01"), (20.0, 30.0, "SPEAKER_02")]
    e = score_episode("ep", 30.0, ref, hyp, {"SPEAKER_00": "lsA", "SPEAKER_01": "lsB"}, {"lsA", "lsB"})
    assert e.enrolled_missed == pytest.approx(2.0)  # A's first 2 s: no speaker at all
    assert e.enrolled_named == pytest.approx(18.0) and e.enrolled_lost_in_overlap == 0
    hyp = [(0.0, 8.0, "SPEAKER_00"), (8.0, 10.0, "SPEAKER_02"), (10.0, 20.0, "SPEAKER_01"),
           (20.0, 30.0, "SPEAKER_02")]  # the overlap went to the stranger's speaker alone
    e = score_episode("ep", 30.0, ref, hyp, {"SPEAKER_00": "lsA", "SPEAKER_01": "lsB"}, {"lsA", "lsB"})
    assert e.enrolled_missed == 0 and e.enrolled_lost_in_overlap == pytest.approx(2.0)
    overall = totals([e])
    assert overall["enrolled_missed"] == 0 and overall["enrolled_lost_in_overlap"] == pytest.approx(0.1)


def test_rescore_remakes_the_report_without_models(tmp_path, capsys):
    scores = REPO / "eval" / "results" / "voices-dev" / "scores.json"
    shutil.copy(scores, tmp_path / "scores.json")
    code = main(["voices", "--rescore", str(tmp_path / "scores.json"), "--out", str(tmp_path), "--threshold", "0.95"])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["threshold"] == 0.95 and len(report["episodes"]) == len(json.loads(scores.read_text())["episodes"])
    assert code == 1 and "NOT MET: enrolled speakers' speech named correctly" in out  # 0.95 names almost nothing
    assert (tmp_path / "threshold_curve.png").stat().st_size > 1000
    assert "Where the enrolled speech not named right goes" in (tmp_path / "report.md").read_text()
    sweep = {row["threshold"]: row for row in report["sweep"]}
    assert sweep[0.6]["strangers_named"] >= sweep[0.8]["strangers_named"]
