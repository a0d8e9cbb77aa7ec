"""Scores on hand-made annotations whose errors are known by construction."""

import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

from eval.readers import Document, TextSegment, Turn  # noqa: E402
from eval.scoring import (  # noqa: E402
    ScoreSettings,
    error_regions,
    normalize_text,
    score_corpus,
    score_file,
)


def doc(uri, *turns, text=None):
    return Document(uri=uri, turns=[Turn(s, e, spk) for s, e, spk in turns], text=text)


# ref: A 0-10, B 10-20, C 20-24 (24 s of speech)
# hyp: X 0-10 (-> A), Y 12-20 (-> B: 2 s missed), X 20-24 (C's speech given to A's cluster:
#      4 s confusion), Z 25-27 (nobody speaks: 2 s false alarm)
REF = doc("f", (0, 10, "A"), (10, 20, "B"), (20, 24, "C"))
HYP = doc("f", (0, 10, "X"), (12, 20, "Y"), (20, 24, "X"), (25, 27, "Z"))
UEM = [(0.0, 30.0)]


def test_known_parts_without_collar():
    r = score_file("f", REF, HYP, ScoreSettings(), UEM).row
    assert r.total == pytest.approx(24)
    assert r.missed == pytest.approx(2)
    assert r.false_alarm == pytest.approx(2)
    assert r.confusion == pytest.approx(4)
    assert r.correct == pytest.approx(18)
    assert r.der == pytest.approx(8 / 24)
    assert r.pct(r.missed) == pytest.approx(100 * 2 / 24)
    assert r.scored == pytest.approx(30)
    assert (r.ref_speakers, r.hyp_speakers) == (3, 3)
    # purity: X covers A 10 + C 4 (largest 10), Y 8 of B, Z nobody; coverage: A 10, B 8, C 4
    assert r.purity == pytest.approx(18 / 24)
    assert r.coverage == pytest.approx(22 / 24)
    assert 0 <= r.jer <= 1


def test_mapping_is_optimal():
    res = score_file("f", REF, HYP, ScoreSettings(), UEM)
    assert res.mapping["X"] == "A" and res.mapping["Y"] == "B"


def test_collar_is_total_width():
    # collar 1.0 removes 0.5 s on each side of every reference boundary (0, 10, 20, 24)
    r = score_file("f", REF, HYP, ScoreSettings(collar=1.0), UEM).row
    assert r.total == pytest.approx(9 + 9 + 3)  # A 0.5-9.5, B 10.5-19.5, C 20.5-23.5
    assert r.missed == pytest.approx(1.5)  # 10.5-12
    assert r.confusion == pytest.approx(3)  # 20.5-23.5
    assert r.false_alarm == pytest.approx(2)  # 25-27 is far from any reference boundary
    assert r.correct == pytest.approx(9 + 7.5)


def test_skip_overlap():
    ref = doc("o", (0, 10, "A"), (5, 15, "B"))  # overlap 5-10
    hyp = doc("o", (0, 10, "X"))
    r = score_file("o", ref, hyp, ScoreSettings(), [(0, 20)]).row
    assert (r.total, r.correct, r.missed) == pytest.approx((20, 10, 10))
    r = score_file("o", ref, hyp, ScoreSettings(skip_overlap=True), [(0, 20)]).row
    assert (r.total, r.correct, r.missed) == pytest.approx((10, 5, 5))


def test_uem_limits_scored_region():
    r = score_file("f", REF, HYP, ScoreSettings(), [(0.0, 24.0)]).row
    assert r.false_alarm == pytest.approx(0)  # 25-27 is outside
    assert r.scored == pytest.approx(24)


def test_no_uem_uses_union_extent_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="eval.scoring"):
        scores = score_corpus({"f": REF}, {"f": HYP}, ScoreSettings())
    f = scores.files[0]
    assert f.row.scored == pytest.approx(27)  # union of extents 0-27
    assert f.uem_source.startswith("union")
    assert "no UEM" in caplog.text


def test_missing_hypothesis_is_all_missed():
    scores = score_corpus({"f": REF}, {}, ScoreSettings(), uem={"f": UEM})
    r = scores.overall
    assert r.missed == pytest.approx(24) and r.der == pytest.approx(1.0)
    assert any("no hypothesis" in n for n in scores.notes)


def _miss(uri, length, missed):
    return doc(uri, (0, length, "A")), doc(uri, (0, length - missed, "X"))


def test_group_and_overall_accumulate_components():
    pairs = {"a": _miss("a", 10, 5), "b": _miss("b", 90, 9), "c": _miss("c", 10, 1)}
    refs = {k: v[0] for k, v in pairs.items()}
    hyps = {k: v[1] for k, v in pairs.items()}
    uem = {"a": [(0, 10)], "b": [(0, 90)], "c": [(0, 10)]}
    scores = score_corpus(refs, hyps, ScoreSettings(), uem=uem, groups={"a": "g1", "b": "g2", "c": "g2"})
    per_file = {f.uri: f.row.der for f in scores.files}
    assert per_file == pytest.approx({"a": 0.5, "b": 0.1, "c": 0.1})
    groups = {g.name: g for g in scores.groups}
    assert groups["g2"].der == pytest.approx((9 + 1) / 100)
    assert groups["g2"].files == 2 and groups["g2"].total == pytest.approx(100)
    overall = scores.overall
    assert overall.der == pytest.approx(15 / 110)
    assert overall.der != pytest.approx(sum(per_file.values()) / 3)  # not a mean of ratios
    assert overall.missed == pytest.approx(15) and overall.files == 3
    assert overall.ref_speakers == 3 and overall.speaker_count_exact == 3


def test_files_outside_groups_file_get_a_group():
    refs = {"a": _miss("a", 10, 1)[0], "b": _miss("b", 10, 1)[0]}
    hyps = {"a": _miss("a", 10, 1)[1], "b": _miss("b", 10, 1)[1]}
    scores = score_corpus(refs, hyps, ScoreSettings(), uem={"a": [(0, 10)], "b": [(0, 10)]}, groups={"a": "g"})
    assert sorted(g.name for g in scores.groups) == ["(no group)", "g"]


def test_error_regions_add_up_without_overlap():
    res = score_file("f", REF, HYP, ScoreSettings(), UEM)
    regions = error_regions(res)
    seconds = {k: sum(e - s for s, e in v) for k, v in regions.items()}
    assert seconds == pytest.approx({"missed": 2, "false_alarm": 2, "confusion": 4})
    assert regions["missed"] == [(10, 12)]


def test_normalize_text():
    assert normalize_text("  Hello, World!  Don't   STOP-now. Élan ") == "hello world dont stop now élan"


def test_wer_cpwer_tcpwer_known_errors():
    ref = [TextSegment("A", "Hello world.", 0.0, 2.0), TextSegment("B", "Good morning, everyone!", 3.0, 6.0)]
    words = [("hello", 0.2, 0.5, "s1"), ("world", 0.6, 1.0, "s1"), ("good", 3.1, 3.4, "s2"),
             ("morning", 3.5, 3.9, "s1"), ("everyone", 4.0, 4.5, "s2")]
    hyp = [TextSegment(spk, w, s, e) for w, s, e, spk in words]
    res = score_file("t", Document("t", text=ref), Document("t", text=hyp), ScoreSettings(), None)
    r = res.row
    assert r.wer.errors == 0 and r.wer.length == 5  # same words, same order
    # s1 = "hello world morning" vs A: 1 insertion; s2 = "good everyone" vs B: 1 deletion
    assert (r.cpwer.errors, r.cpwer.insertions, r.cpwer.deletions) == (2, 1, 1)
    assert r.tcpwer.errors == 2
    assert r.der is None  # text-only documents: no diarization scores


def test_tcpwer_collar_penalizes_far_words():
    ref = [TextSegment("A", "one two", 0.0, 1.0)]
    hyp = [TextSegment("x", "one", 0.1, 0.4), TextSegment("x", "two", 20.0, 20.3)]
    settings = ScoreSettings(tcp_collar=5.0)
    r = score_file("t", Document("t", text=ref), Document("t", text=hyp), settings, None).row
    assert r.cpwer.errors == 0
    assert r.tcpwer.errors == 2  # "two" is 19 s away: deletion + insertion
    r = score_file("t", Document("t", text=ref), Document("t", text=hyp), ScoreSettings(tcp_collar=30), None).row
    assert r.tcpwer.errors == 0


def test_untimed_reference_gives_cpwer_only():
    ref = [TextSegment("A", "a b c"), TextSegment("B", "d e")]
    hyp = [TextSegment("x", "a b c", 0, 1), TextSegment("y", "d", 1, 2)]
    r = score_file("t", Document("t", text=ref), Document("t", text=hyp), ScoreSettings(), None).row
    assert r.cpwer.errors == 1 and r.cpwer.length == 5
    assert r.tcpwer is None


def test_word_counts_accumulate():
    ref = {u: Document(u, text=[TextSegment("A", t, 0, 1)]) for u, t in {"a": "x y", "b": "p q r s t u v w"}.items()}
    hyp = {"a": Document("a", text=[TextSegment("s", "x", 0, 1)]),
           "b": Document("b", text=[TextSegment("s", "p q r s t u v w", 0, 1)])}
    scores = score_corpus(ref, hyp, ScoreSettings())
    assert [f.row.wer.rate for f in scores.files] == pytest.approx([0.5, 0.0])
    assert scores.overall.wer.rate == pytest.approx(1 / 10)
