"""The CLI on a batch mixing good and bad files: real process, real models, real ffmpeg."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, ffmpeg


@pytest.fixture(scope="module")
def batch(tmp_path_factory, sample_wav, model_dir):
    src = tmp_path_factory.mktemp("inputs")
    good = src / "épisode 1 – scène.wav"  # spaces and non-ASCII letters
    shutil.copy(sample_wav, good)
    (src / "notes.wav").write_text("this is a text file, not audio\n")
    (src / "empty.wav").write_bytes(b"")
    ffmpeg("-i", str(sample_wav), "-b:a", "64k", str(src / "full.mp3"))
    data = (src / "full.mp3").read_bytes()
    (src / "truncated.mp3").write_bytes(data[: len(data) // 3])
    (src / "full.mp3").unlink()
    ffmpeg("-f", "lavfi", "-i", "testsrc=d=2:s=64x64:r=10", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(src / "no-audio.mp4"))
    ffmpeg("-i", str(sample_wav), "-t", "0.3", str(src / "tiny.wav"))
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "30", str(src / "silence.wav"))
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=30:c=white:r=16000:a=0.3", str(src / "noise.wav"))
    inputs = [good, src / "missing.wav", src / "notes.wav", src / "empty.wav", src / "truncated.mp3",
              src / "no-audio.mp4", src / "tiny.wav", src / "silence.wav", src / "noise.wav"]
    out = tmp_path_factory.mktemp("out")
    proc = subprocess.run(
        [sys.executable, "-m", "diarkit", "transcribe", *map(str, inputs), "-o", str(out),
         "--model-dir", str(model_dir), "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    return proc, out


BAD = {
    "missing.wav": "no such file",
    "notes.wav": "not a readable audio or video file",
    "empty.wav": "empty",
    "truncated.mp3": "truncated",
    "no-audio.mp4": "no audio track",
}


def test_batch_exit_status_is_nonzero_and_lists_failures(batch):
    proc, _ = batch
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{len(BAD)} of 9 file(s) failed" in proc.stderr


@pytest.mark.parametrize("name,cause", sorted(BAD.items()))
def test_each_bad_file_gets_one_line_naming_file_and_cause(batch, name, cause):
    proc, out = batch
    lines = [line for line in proc.stderr.splitlines() if line.startswith("diarkit: error:") and name in line]
    assert len(lines) == 1, proc.stderr
    assert cause in lines[0]
    assert not list(out.glob(f"{Path(name).stem}.*"))


def test_good_file_with_spaces_and_accents_is_written(batch):
    _, out = batch
    stem = "épisode 1 – scène"
    for ext in ("json", "srt", "vtt", "rttm", "txt"):
        assert (out / f"{stem}.{ext}").stat().st_size > 0
    data = json.loads((out / f"{stem}.json").read_text("utf-8"))
    assert data["num_speakers"] == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("stem,max_words", [("silence", 0), ("noise", 3), ("tiny", 3)])
def test_silence_noise_and_tiny_clip_give_valid_near_empty_results(batch, stem, max_words):
    _, out = batch
    data = json.loads((out / f"{stem}.json").read_text("utf-8"))
    assert data["version"] == "1.1"
    words = [w for s in data["segments"] for w in s["words"]]
    assert len(words) <= max_words
    assert (out / f"{stem}.srt").exists() and (out / f"{stem}.rttm").exists()


def test_bad_option_is_a_usage_error(model_dir, sample_wav, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "diarkit", "transcribe", str(sample_wav), "-o", str(tmp_path),
         "--min-speakers", "4", "--max-speakers", "2", "--model-dir", str(model_dir)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 2
    assert "min_speakers (4) is larger than max_speakers (2)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_model_directory_says_how_to_fetch(sample_wav, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "diarkit", "transcribe", str(sample_wav), "--model-dir", str(tmp_path / "nope")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 2
    assert "fetch_models.py" in proc.stderr and "Traceback" not in proc.stderr


def test_inputs_with_the_same_stem_do_not_overwrite_each_other(model_dir, sample_wav, tmp_path):
    """a.wav and a.mp3 in one batch: two results, each named after its own input."""
    ffmpeg("-i", str(sample_wav), "-t", "4", str(tmp_path / "a.wav"))
    ffmpeg("-i", str(sample_wav), "-t", "4", "-b:a", "64k", str(tmp_path / "a.mp3"))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "diarkit", "transcribe", str(tmp_path / "a.wav"), str(tmp_path / "a.mp3"),
         "-o", str(out), "--model-dir", str(model_dir), "--formats", "json,srt", "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.mp3.json", "a.mp3.srt", "a.wav.json", "a.wav.srt"]
    assert json.loads((out / "a.wav.json").read_text())["duration"] == pytest.approx(4.0, abs=0.1)
