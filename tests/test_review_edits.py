"""The review page's edits, replayed over the pipeline's real result for the sample."""

from __future__ import annotations

import copy

import pytest

from diarkit.review.edits import EditError, apply_edits, parse_edits
from diarkit.writers import to_rttm, to_srt


def words_of(result):
    return [w for s in result.segments for w in s.words]


def labels_everywhere(result) -> set[str]:
    return ({s.label for s in result.speakers} | {t.speaker for t in result.turns}
            | {s.speaker for s in result.segments} | {w.speaker for w in words_of(result)})


def check_consistent(result) -> None:
    """What every saved result must satisfy, whatever the edits."""
    for seg in result.segments:
        assert seg.words, "a segment without words"
        assert {w.speaker for w in seg.words} == {seg.speaker}
        assert seg.text == " ".join(w.word for w in seg.words)
        assert seg.start == seg.words[0].start and seg.end == max(w.end for w in seg.words)
    by_speaker = {}
    for turn in result.turns:
        assert turn.end > turn.start
        by_speaker.setdefault(turn.speaker, []).append(turn)
    for turns in by_speaker.values():  # one speaker's turns never overlap
        turns.sort(key=lambda t: t.start)
        assert all(a.end < b.start for a, b in zip(turns, turns[1:]))
    counts = {}
    for w in words_of(result):
        counts[w.speaker] = counts.get(w.speaker, 0) + 1
    assert {s.label: s.words for s in result.speakers if s.words} == counts


@pytest.fixture(scope="module")
def original(sample_result):
    assert {s.label for s in sample_result.speakers} == {"SPEAKER_00", "SPEAKER_01"}
    return sample_result


def test_no_edits_give_the_result_unchanged(original):
    assert apply_edits(original, []).to_dict() == original.to_dict()


def test_rename_applies_everywhere_and_keeps_the_original(original):
    before = copy.deepcopy(original.to_dict())
    edited = apply_edits(original, parse_edits([{"op": "rename", "speaker": "SPEAKER_00", "name": "  Diane   Smith "}]))
    assert original.to_dict() == before
    assert labels_everywhere(edited) == {"Diane Smith", "SPEAKER_01"}
    assert [w.word for w in words_of(edited)] == [w.word for w in words_of(original)]
    assert len(edited.segments) == len(original.segments)
    old = {s.label: s for s in original.speakers}
    new = {s.label: s for s in edited.speakers}
    assert new["Diane Smith"].speaking_time == old["SPEAKER_00"].speaking_time
    assert "DIANE SMITH: " in to_srt(edited) and "SPEAKER_00" not in to_srt(edited)  # SRT names in capitals
    check_consistent(edited)


def test_rename_to_a_name_in_use_asks_for_a_merge(original):
    with pytest.raises(EditError, match="already a speaker.*merge") as info:
        apply_edits(original, parse_edits([{"op": "rename", "speaker": "SPEAKER_00", "name": "SPEAKER_01"}]))
    assert info.value.index == 0 and info.value.status == 400


def test_merge_leaves_one_speaker_with_the_union_of_turns(original):
    edited = apply_edits(original, parse_edits([{"op": "merge", "source": "SPEAKER_01", "target": "SPEAKER_00"}]))
    assert labels_everywhere(edited) == {"SPEAKER_00"}
    assert edited.num_speakers == 1 and edited.speakers[0].words == len(words_of(original))
    speech = sum(s.speaking_time for s in original.speakers)
    assert max(s.speaking_time for s in original.speakers) < edited.speakers[0].speaking_time <= speech
    check_consistent(edited)


def test_move_part_of_a_segment_cuts_it_and_moves_the_turn(original):
    seg_index, seg = next((i, s) for i, s in enumerate(original.segments) if len(s.words) >= 4)
    first = sum(len(s.words) for s in original.segments[:seg_index]) + 1
    last = first + len(seg.words) - 3  # leaves one word at each end
    other = "SPEAKER_01" if seg.speaker == "SPEAKER_00" else "SPEAKER_00"
    edited = apply_edits(original, parse_edits([{"op": "move", "first": first, "last": last, "speaker": other}]))
    assert len(edited.segments) == len(original.segments) + 2
    pieces = edited.segments[seg_index:seg_index + 3]
    assert [p.speaker for p in pieces] == [seg.speaker, other, seg.speaker]
    assert " ".join(p.text for p in pieces) == seg.text
    start, end = seg.words[1].start, max(w.end for w in seg.words[1:-1])
    assert any(t.speaker == other and t.start <= start and t.end >= end for t in edited.turns)
    assert not any(t.speaker == seg.speaker and t.start < end and t.end > start for t in edited.turns)
    assert f" {other} " in to_rttm(edited)
    check_consistent(edited)


def test_move_to_a_new_speaker_adds_it(original):
    edited = apply_edits(original, parse_edits([{"op": "move", "first": 0, "last": 0, "speaker": "NARRATOR"}]))
    assert labels_everywhere(edited) == {"NARRATOR", "SPEAKER_00", "SPEAKER_01"}
    assert edited.segments[0].speaker == "NARRATOR" and edited.num_speakers == 3
    check_consistent(edited)


def test_split_and_undo_by_replaying_fewer_edits(original):
    seg_index, seg = next((i, s) for i, s in enumerate(original.segments) if len(s.words) >= 2)
    word = sum(len(s.words) for s in original.segments[:seg_index]) + 1
    edits = parse_edits([{"op": "split", "word": word}, {"op": "rename", "speaker": seg.speaker, "name": "A"}])
    edited = apply_edits(original, edits)
    assert len(edited.segments) == len(original.segments) + 1
    assert edited.segments[seg_index].text + " " + edited.segments[seg_index + 1].text == seg.text
    check_consistent(edited)
    undone = apply_edits(original, edits[:1])  # what undo of the rename shows
    assert seg.speaker in labels_everywhere(undone) and "A" not in labels_everywhere(undone)
    with pytest.raises(EditError, match="already starts a segment"):
        apply_edits(original, parse_edits([{"op": "split", "word": word - 1}]))


def test_a_later_edit_still_names_the_same_words_after_cuts(original):
    """Positions are stable: moving words after a split and a move elsewhere hits the same words."""
    n = len(words_of(original))
    target = words_of(original)[n - 1]
    edited = apply_edits(original, parse_edits([
        {"op": "split", "word": next(i for i in range(1, n) if i not in _starts(original))},
        {"op": "move", "first": 0, "last": 2, "speaker": "X"},
        {"op": "move", "first": n - 1, "last": n - 1, "speaker": "Y"},
    ]))
    moved = words_of(edited)[n - 1]
    assert (moved.word, moved.start, moved.speaker) == (target.word, target.start, "Y")


def _starts(result) -> set[int]:
    starts, position = set(), 0
    for seg in result.segments:
        starts.add(position)
        position += len(seg.words)
    return starts


@pytest.mark.parametrize("edits, message", [
    ({"op": "rename"}, "must be a JSON list"),
    ([{"op": "delete", "word": 1}], "unknown edit 'delete'"),
    ([{"op": "rename", "speaker": "SPEAKER_00"}], "rename needs name"),
    ([{"op": "rename", "speaker": "SPEAKER_00", "name": "A", "extra": 1}], "unknown field"),
    ([{"op": "rename", "speaker": "SPEAKER_00", "name": "<v X>"}], "may not contain"),
    ([{"op": "rename", "speaker": "SPEAKER_00", "name": "   "}], "non-empty"),
    ([{"op": "rename", "speaker": "SPEAKER_00", "name": "x" * 81}], "longer than 80"),
    ([{"op": "move", "first": -1, "last": 2, "speaker": "A"}], "word position"),
    ([{"op": "move", "first": "1", "last": 2, "speaker": "A"}], "word position"),
    ([{"op": "move", "first": 1, "last": True, "speaker": "A"}], "word position"),
    ([{"op": "split", "word": 1, "at": 5}], "ISO 8601"),
])
def test_malformed_edits_are_refused_with_what_is_wrong(edits, message):
    with pytest.raises(EditError, match=message):
        parse_edits(edits)


@pytest.mark.parametrize("edits, message", [
    ([{"op": "rename", "speaker": "NOBODY", "name": "A"}], "no speaker 'NOBODY'"),
    ([{"op": "merge", "source": "SPEAKER_00", "target": "SPEAKER_00"}], "into itself"),
    ([{"op": "move", "first": 3, "last": 2, "speaker": "A"}], "is empty"),
    ([{"op": "move", "first": 0, "last": 10_000, "speaker": "A"}], "past the last word"),
    ([{"op": "split", "word": 10_000}], "past the last word"),
])
def test_edits_that_do_not_fit_the_result_are_refused(original, edits, message):
    with pytest.raises(EditError, match=f"edit 1: .*{message}"):
        apply_edits(original, parse_edits(edits))


def test_moving_words_to_their_own_speaker_is_refused(original):
    speaker = words_of(original)[0].speaker
    other = ({"SPEAKER_00", "SPEAKER_01"} - {speaker}).pop()
    with pytest.raises(EditError, match=f"edit 2: those words are already {speaker}'s"):
        apply_edits(original, parse_edits([{"op": "rename", "speaker": other, "name": "B"},
                                           {"op": "move", "first": 0, "last": 0, "speaker": speaker}]))
