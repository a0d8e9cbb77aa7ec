"""Output formats are written from one result and parse back as their formats require."""

from __future__ import annotations

import json
import re

from pyannote.database.util import load_rttm

from diarkit.result import TranscriptResult
from diarkit.subtitles import track_for
from diarkit.writers import render, write_outputs

SRT_TIME = r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d"
VTT_TIME = r"\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d"


def test_json_round_trips(sample_result):
    data = json.loads(render(sample_result, "json"))
    assert data["version"] == "1.1"
    back = TranscriptResult.from_dict(data)
    assert [s.text for s in back.segments] == [s.text for s in sample_result.segments]
    assert len(back.turns) == len(sample_result.turns)
    for key in ("segments", "diarization", "speakers", "language", "duration", "models", "timings"):
        assert key in data


def test_srt_blocks_are_numbered_timed_subtitle_events(sample_result):
    blocks = render(sample_result, "srt").strip().split("\n\n")
    events = track_for(sample_result, speaker_labels=True).events  # SRT names the speakers in the text
    assert len(blocks) == len(events) > 0
    assert blocks[0].splitlines()[2].startswith(f"{events[0].speakers[0]}: ")
    for number, (block, event) in enumerate(zip(blocks, events), 1):
        lines = block.splitlines()
        assert lines[0] == str(number)
        assert re.fullmatch(SRT_TIME, lines[1])
        assert lines[2:] == event.lines


def test_vtt_has_header_and_voice_spans(sample_result):
    text = render(sample_result, "vtt")
    assert text.startswith("WEBVTT\n\n")
    cues = text.strip().split("\n\n")[1:]
    assert len(cues) == len(track_for(sample_result).events)
    for cue in cues:
        timing, payload = cue.splitlines()[:2]
        assert re.fullmatch(VTT_TIME, timing)
        assert re.match(r"<v SPEAKER_\d\d>\S", payload)


def test_rttm_parses_with_pyannote(sample_result, tmp_path):
    (path,) = write_outputs(sample_result, tmp_path, ["rttm"], stem="x")
    annotation = load_rttm(str(path))["sample"]
    assert set(annotation.labels()) == {s.label for s in sample_result.speakers}
    written = sum(segment.duration for segment, _ in annotation.itertracks())
    assert abs(written - sum(t.end - t.start for t in sample_result.turns)) < 0.05


def test_txt_lines_start_with_speaker(sample_result):
    lines = render(sample_result, "txt").splitlines()
    assert lines and all(re.match(r"SPEAKER_\d\d: \S", line) for line in lines)


def test_writes_are_atomic_and_leave_no_temporary_files(sample_result, tmp_path):
    written = write_outputs(sample_result, tmp_path, "json,srt,vtt,rttm,txt", stem="épisode 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
