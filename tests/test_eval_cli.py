"""``python -m eval score`` end to end on small hand-made data, and ``run`` with a stand-in pipeline."""

import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]

from eval import run as run_mod  # noqa: E402
from eval.__main__ import main  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rttm(uri, turns):
    return "".join(f"SPEAKER {uri} 1 {s:.3f} {e - s:.3f} <NA> <NA> {spk} <NA> <NA>\n" for s, e, spk in turns)


@pytest.fixture
def data(tmp_path):
    """Two files; 'f1' has 2 s missed + 2 s false alarm + 4 s confusion over 24 s; 'f2' is perfect."""
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    write(ref / "f1.rttm", rttm("f1", [(0, 10, "A"), (10, 20, "MÉO069"), (20, 24, "C")]))
    write(ref / "f2.rttm", rttm("f2", [(0, 5, "A"), (5, 8, "B")]))
    write(ref / "f1.stm", "f1 1 A 0 10 hello world\nf1 1 MÉO069 10 20 good morning everyone\n")
    write(hyp / "f1.rttm", rttm("f1", [(0, 10, "s1"), (12, 20, "s2"), (20, 24, "s1"), (25, 27, "s3")]))
    write(hyp / "f2.rttm", rttm("f2", [(0, 5, "x"), (5, 8, "y")]))
    words = [("hello", 0.5, 1.0, "s1"), ("world", 1.0, 1.5, "s1"), ("good", 12.5, 13.0, "s2"),
             ("morning", 13.0, 13.5, "s2"), ("everybody", 14.0, 14.5, "s2")]
    hyp_json = {"version": "1.0", "uri": "f1", "duration": 30.0,
                "segments": [{"start": s, "end": e, "text": w, "speaker": spk,
                              "words": [{"word": w, "start": s, "end": e, "speaker": spk}]} for w, s, e, spk in words],
                "diarization": [], "timings": {}}
    write(hyp / "f1.json", json.dumps(hyp_json))  # turns still come from f1.rttm (preferred), words from here
    uem = write(tmp_path / "all.uem", "f1 1 0 30\nf2 1 0 10\n")
    groups = write(tmp_path / "groups.tsv", "f1\tdrama\nf2\tdocumentary\n")
    return SimpleNamespace(ref=ref, hyp=hyp, uem=uem, groups=groups, root=tmp_path)


def test_score_writes_reports(data, capsys):
    out = data.root / "out"
    code = main(["score", "--ref", str(data.ref), "--hyp", str(data.hyp), "--uem", str(data.uem),
                 "--groups", str(data.groups), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "OVERALL" in printed and "drama" in printed and "WER" in printed

    md = (out / "report.md").read_text(encoding="utf-8")
    assert "total width" in md and "MÉO069" in md and "## Transcripts" in md
    assert "| f1 | 33.33% | 75.00% (18.00 s) | 8.33% (2.00 s) | 16.67% (4.00 s) | 8.33% (2.00 s) |" in md

    rows = list(csv.DictReader(open(out / "report.csv", encoding="utf-8")))
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"f1", "f2", "drama", "documentary", "OVERALL"}
    assert float(by_name["f1"]["missed_s"]) == pytest.approx(2)
    assert float(by_name["f2"]["der_pct"]) == pytest.approx(0)
    assert float(by_name["OVERALL"]["der_pct"]) == pytest.approx(100 * 8 / 32)
    assert by_name["f1"]["group"] == "drama" and by_name["f1"]["uem_source"] == "--uem file"

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["overall"]["false_alarm_s"] == pytest.approx(2)
    assert report["settings"]["collar"] == 0.0
    f1 = next(f for f in report["files"] if f["name"] == "f1")
    assert f1["mapping"] == {"s1": "A", "s2": "MÉO069"}
    assert f1["wer_errors"] == 1 and f1["cpwer_errors"] == 1 and f1["tcpwer_errors"] == 1  # everybody/everyone

    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["der_parts.png", "timeline_f1.png", "timeline_f2.png"]
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_score_collar_and_skip_overlap_flags(data, capsys):
    out = data.root / "out"
    main(["score", "--ref", str(data.ref / "f1.rttm"), "--hyp", str(data.hyp / "f1.rttm"), "--uem", str(data.uem),
          "--collar", "1.0", "--out", str(out), "--no-plots"])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["overall"]["missed_s"] == pytest.approx(1.5)
    assert report["overall"]["confusion_s"] == pytest.approx(3)
    assert "md-eval -c 0.5" in (out / "report.md").read_text(encoding="utf-8")
    assert not list(out.glob("*.png"))


def test_score_without_uem_warns(data, capsys, caplog):
    assert main(["score", "--ref", str(data.ref / "f2.rttm"), "--hyp", str(data.hyp / "f2.rttm")]) == 0
    assert "no UEM" in caplog.text
    assert "note: no UEM" in capsys.readouterr().out


def test_malformed_input_exits_2_with_one_line(data, capsys):
    write(data.ref / "f2.rttm", "SPEAKER f2 1 0 1 <NA> <NA> A <NA> <NA>\nSPEAKER f2 1 oops 1 <NA> <NA> A\n")
    assert main(["score", "--ref", str(data.ref), "--hyp", str(data.hyp)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f"{data.ref / 'f2.rttm'}:2:" in err[0]


def test_module_entry_point_runs():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "eval", "score", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "total" in proc.stdout.lower() and "--skip-overlap" in proc.stdout


# ----------------------------------------------------------------------------- run, with a stand-in pipeline


class FakePipeline:
    """Answers with the reference shifted by 0.5 s; records how it was called."""

    calls = []

    @classmethod
    def from_model_dir(cls, model_dir, device="auto"):
        cls.calls.append(("load", model_dir, device))
        return cls()

    def transcribe(self, path, *, options):
        self.calls.append(("transcribe", Path(path).name, options.num_speakers))
        if "broken" in path:
            raise RuntimeError("cannot decode")
        turns = [{"start": 0.5, "end": 4.0, "speaker": "SPEAKER_00"}, {"start": 5.0, "end": 8.0, "speaker": "SPEAKER_01"}]
        return SimpleNamespace(uri=Path(path).stem, duration=10.0, turns=turns, timings={"vad": 0.1, "asr": 0.2})


def fake_write_outputs(result, out_dir, formats=("json",), stem=None):
    data = {"version": "1.0", "uri": result.uri, "duration": result.duration, "segments": [],
            "diarization": result.turns, "timings": result.timings}
    Path(out_dir, f"{stem}.json").write_text(json.dumps(data))
    Path(out_dir, f"{stem}.rttm").write_text(rttm(result.uri, [(t["start"], t["end"], t["speaker"])
                                                               for t in result.turns]))


def test_run_with_stand_in_pipeline(tmp_path, monkeypatch, capsys):
    import numpy as np
    import soundfile as sf

    dataset = tmp_path / "ds"
    dataset.mkdir()
    for stem in ("a", "b", "broken", "noref"):
        sf.write(str(dataset / f"{stem}.wav"), np.zeros(16000 * 10, dtype="float32"), 16000)
    write(dataset / "a.rttm", rttm("a", [(0, 4, "A"), (5, 8, "B")]))
    write(dataset / "b.rttm", rttm("whatever", [(0, 4, "A"), (5, 8, "B")]))  # uri differs from stem
    write(dataset / "broken.rttm", rttm("broken", [(0, 1, "A")]))
    write(dataset / "b.uem", "b 1 0 8\n")
    FakePipeline.calls = []
    monkeypatch.setattr(run_mod, "import_pipeline", lambda: (FakePipeline, fake_write_outputs))
    out = tmp_path / "out"
    code = main(["run", str(dataset), "--out", str(out), "--num-speakers", "2", "--no-plots"])
    assert code == 1  # 'broken' failed
    assert FakePipeline.calls[0] == ("load", "model", "auto")
    assert ("transcribe", "a.wav", 2) in FakePipeline.calls
    assert all(c[1] != "noref.wav" for c in FakePipeline.calls)
    assert (out / "hyp" / "a.json").exists() and (out / "hyp" / "a.rttm").exists()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    files = {f["name"]: f for f in report["files"]}
    assert set(files) == {"a", "b"}
    assert files["a"]["uem_source"] == "0 to file duration" and files["a"]["uem"] == [[0.0, 10.0]]
    assert files["b"]["uem_source"] == "reference .uem file"
    assert files["a"]["missed_s"] == pytest.approx(0.5)
    runtime = {r["file"]: r for r in report["runtime"]}
    assert runtime["a"]["stage_asr"] == 0.2 and runtime["a"]["rtf"] is not None
    assert runtime["a"]["peak_rss_mib"] > 0 and "TOTAL" in runtime
    assert any(n.startswith("FAILED broken") for n in report["notes"])
    assert (out / "runtime.csv").exists()
    assert "## Runtime" in (out / "report.md").read_text(encoding="utf-8")
