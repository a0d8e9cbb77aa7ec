"""Subtitle rules, checker, TTML, dialogue list and SMPTE timecodes (issue 15).

The checker is shown each kind of violation on hand-made files; diarkit's own SRT, VTT
and TTML of the sample pass it; timecodes are checked against the frame times ffprobe
reports for videos made with ffmpeg at 25 and 29.97 fps.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from fractions import Fraction

import pytest
from openpyxl import load_workbook

from conftest import REPO, ffmpeg
from diarkit.audio import probe
from diarkit.dialogue import COLUMNS, SPEAKER_COLUMNS
from diarkit.errors import OptionsError
from diarkit.request import RequestOptions
from diarkit.serving.protocol import negotiate_format
from diarkit.subtitles import KINDS, break_lines, check_file, get_rules, read_subtitles, track_for
from diarkit.timecode import FrameRate
from diarkit.ttml import validate_imsc_text
from diarkit.writers import CONTENT_TYPES, render, write_outputs


def check_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diarkit", "check-subtitles", *args], capture_output=True,
                          text=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})


# one event per kind of violation, at 25 fps (a frame is 40 ms, 2 frames 80 ms)
BAD_SRT = """1
00:00:01,000 --> 00:00:03,000
This line is much longer than forty-two characters, surely.

2
00:00:04,000 --> 00:00:06,000
One
Two
Three

3
00:00:07,000 --> 00:00:08,000
Far too many words to read in one second!

4
00:00:09,000 --> 00:00:09,400
Short.

5
00:00:10,000 --> 00:00:18,000
Too long on screen.

6
00:00:19,000 --> 00:00:20,000
Gap of one frame after me.

7
00:00:20,040 --> 00:00:21,500
I overlap the next one.

8
00:00:21,000 --> 00:00:22,000
Started before you ended.

9
00:00:23,010 --> 00:00:24,000
Not on a frame.
"""

GOOD_SRT = """1
00:00:01,000 --> 00:00:03,000
-Are you coming?
-In a minute.

2
00:00:03,080 --> 00:00:05,000
Fine.
"""


def test_checker_lists_every_kind_of_violation_and_exits_non_zero(tmp_path):
    path = tmp_path / "bad.srt"
    path.write_text(BAD_SRT, "utf-8")
    found = {(v.index, v.kind) for v in check_file(path, "streaming-en", "25")}
    expected = {(1, "line_length"), (2, "line_count"), (3, "reading_speed"), (4, "min_duration"),
                (5, "max_duration"), (6, "gap"), (7, "overlap"), (9, "frame")}
    assert expected <= found
    assert {kind for _, kind in found} == set(KINDS)
    proc = check_cli(str(path), "--rules", "streaming-en", "--frame-rate", "25")
    assert proc.returncode == 1
    for kind in KINDS:
        assert f": {kind}: " in proc.stdout, kind


def test_checker_passes_a_conformant_file_and_reads_vtt_and_ttml(tmp_path):
    good = tmp_path / "good.srt"
    good.write_text(GOOD_SRT, "utf-8")
    proc = check_cli(str(good))
    assert proc.returncode == 0, proc.stdout
    vtt = tmp_path / "bad.vtt"
    vtt.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:01.200\n<v Ann>Too quick.</v>\n", "utf-8")
    assert {v.kind for v in check_file(vtt)} == {"min_duration", "reading_speed"}
    ttml = tmp_path / "bad.ttml"
    ttml.write_text('<tt xmlns="http://www.w3.org/ns/ttml" xmlns:ttp="http://www.w3.org/ns/ttml#parameter" '
                    'ttp:frameRate="24" xml:lang="en"><body><div>'
                    '<p begin="00:00:01.000" end="00:00:01.010">A</p>'
                    '<p begin="24f" end="72f">B<br/>C<br/>D</p></div></body></tt>', "utf-8")
    kinds = {(v.index, v.kind) for v in check_file(ttml)}  # the file's own 24 fps grid
    assert {(1, "frame"), (1, "min_duration"), (1, "overlap"), (2, "line_count")} <= kinds


def test_checker_refuses_unreadable_files_with_exit_2(tmp_path):
    path = tmp_path / "notes.docx"
    path.write_text("x", "utf-8")
    proc = check_cli(str(path), str(tmp_path / "missing.srt"))
    assert proc.returncode == 2
    assert "notes.docx" in proc.stderr and "missing.srt: no such file" in proc.stderr
    assert check_cli(str(path), "--rules", "nope").returncode == 2


def test_line_breaks_at_phrase_boundaries():
    lines = break_lines("I went to the market this morning, and I bought some apples there.", 42)
    assert lines == ["I went to the market this morning,", "and I bought some apples there."]
    assert break_lines("x" * 43, 42) is None
    assert all(len(line) <= 42 for line in break_lines("word " * 16, 42))


def test_sample_subtitles_pass_the_checker_ttml_validates_and_reads_back(sample_result, tmp_path):
    track = track_for(sample_result)
    rules = get_rules(sample_result.subtitle_rules)
    assert len(track.events) >= 5
    warned = [w for w in sample_result.warnings if w.startswith("subtitle ")]
    assert set(track.warnings) <= set(warned)
    assert len(warned) < 0.05 * len(track.events) or len(warned) == 0
    for path in write_outputs(sample_result, tmp_path, "srt,vtt,ttml", stem="sample"):
        expected = track_for(sample_result, speaker_labels=path.suffix == ".srt")  # SRT names speakers in the text
        violations = check_file(path, rules, track.rate)
        assert [v for v in violations if v.kind != "reading_speed"] == [], (path.name, violations)
        assert len(violations) <= len(warned)
        events, _ = read_subtitles(path)
        assert [e.lines for e in events] == [e.lines for e in expected.events]
    ttml = (tmp_path / "sample.ttml").read_bytes()
    check = validate_imsc_text(ttml)
    assert check.ok, check.problems
    events, declared = read_subtitles(tmp_path / "sample.ttml")
    assert declared == track.rate
    assert [(e.start * track.rate.fps, e.end * track.rate.fps) for e in events] == \
        [(e.start, e.end) for e in track.events]
    assert b"ttm:agent" in ttml and all(s.label.encode() in ttml for s in sample_result.speakers)


def test_imsc_validation_catches_a_broken_document():
    assert not validate_imsc_text(b"<tt xmlns='http://www.w3.org/ns/ttml'><body><div><p begin='1s'>x</p>"
                                  b"</div></body></tt>").ok  # no profile
    assert not validate_imsc_text(b"<tt").ok


def frame_times(video) -> list[float]:
    proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "frame=pts_time", "-of", "csv=p=0", str(video)], capture_output=True, text=True, check=True)
    return [float(line.split(",")[0]) for line in proc.stdout.split()]


@pytest.mark.parametrize("rate,name,known", [
    ("25", "25", {0: "00:00:00:00", 24: "00:00:00:24", 25: "00:00:01:00", 1500: "00:01:00:00",
                  1537: "00:01:01:12"}),
    ("30000/1001", "29.97df", {0: "00:00:00;00", 1799: "00:00:59;29", 1800: "00:01:00;02",
                               1801: "00:01:00;03", 3597: "00:01:59;29", 3598: "00:02:00;02"}),
])
def test_timecodes_are_frame_accurate_for_ffmpeg_videos(tmp_path, rate, name, known):
    video = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", f"color=c=black:s=32x32:r={rate}:d=121", "-f", "lavfi", "-i",
           "anullsrc=r=16000:cl=mono", "-t", "121", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           str(video))
    info = probe(video)
    frame_rate = FrameRate.from_ffprobe(info.video_frame_rate, info.video_timecode)
    assert frame_rate.name == name
    times = frame_times(video)
    assert len(times) > max(known) and len(times) >= 3000
    for n, t in enumerate(times):  # every frame's own time gives back its own frame number
        assert frame_rate.frame(t) == n
        assert frame_rate.parse_timecode(frame_rate.timecode(t)) == n
    for n, code in known.items():
        assert frame_rate.timecode(times[n]) == code


def test_dialogue_list_of_a_2997_video_and_xlsx_sheets(pipeline, sample_wav, tmp_path):
    video = tmp_path / "episode.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=32x32:r=30000/1001:d=30", "-i", str(sample_wav), "-shortest",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(video))
    result = pipeline.transcribe(video)
    assert result.frame_rate == "29.97df"
    rate = FrameRate.parse(result.frame_rate)
    rows = list(csv.reader(io.StringIO(render(result, "csv"))))
    assert tuple(rows[0]) == COLUMNS and len(rows) > 3
    words = sorted(result.words, key=lambda w: w.start)
    starts = {round(w.start, 3) for w in words}
    for in_tc, out_tc, source, dialogue in rows[1:]:
        assert ";" in in_tc and rate.parse_timecode(in_tc) <= rate.parse_timecode(out_tc)
        assert source in {s.label.upper() for s in result.speakers}
        if dialogue != "(overlapping speech)":
            first = next(w for w in words if dialogue.startswith(w.word.strip()) and
                         rate.timecode(w.start) == in_tc)
            assert round(first.start, 3) in starts
    book = load_workbook(io.BytesIO(render(result, "xlsx")))
    assert book.sheetnames == ["Dialogue", "Speakers"]
    sheet_rows = [tuple(c.value or "" for c in row) for row in book["Dialogue"].iter_rows()]
    assert sheet_rows == [tuple(r) for r in rows]
    speakers = list(book["Speakers"].iter_rows(values_only=True))
    assert speakers[0] == SPEAKER_COLUMNS
    assert {row[0] for row in speakers[1:]} == {s.label.upper() for s in result.speakers}
    assert sum(row[2] for row in speakers[1:]) == len(result.words)
    data = json.loads(render(result, "json"))
    assert data["frame_rate"] == "29.97df" and data["version"] == "1.1"


def test_formats_reach_the_cli_http_and_options():
    assert negotiate_format("application/ttml+xml") == "ttml"
    assert negotiate_format(CONTENT_TYPES["xlsx"]) == "xlsx"
    assert negotiate_format("text/csv") == "csv"
    assert RequestOptions.from_custom_attributes("format=xlsx;frame_rate=29.97DF").frame_rate == "29.97df"
    with pytest.raises(OptionsError, match="frame rate"):
        RequestOptions.from_mapping({"frame_rate": "12.5x"})
    with pytest.raises(OptionsError, match="subtitle rules"):
        RequestOptions(subtitle_rules="klingon")
    assert Fraction(FrameRate.parse("23.976").fps) == Fraction(24000, 1001)


def test_eval_subtitles_command_passes_on_the_sample(sample_result, tmp_path):
    hyp = tmp_path / "hyp"
    write_outputs(sample_result, hyp, "json", stem="sample")
    proc = subprocess.run([sys.executable, "-m", "eval", "subtitles", str(hyp), "--out", str(tmp_path / "subs")],
                          capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "subs" / "report.json").read_text("utf-8"))
    assert report["files"] == 1 and report["events"] == len(track_for(sample_result).events)
    assert sorted(p.suffix for p in (tmp_path / "subs").glob("sample.*")) == [".srt", ".ttml", ".vtt"]
