"""The production profiles (large-v2, large-v3) load and run offline from their model directory.

Stand-in weights (tests/standins.py: random, with the exact architecture and file format of
each hub file) in directories laid out as scripts/fetch_models.py writes them; the ASR is the
bundled tiny.en (same loader). 10 s of audio: ResNet34 embeddings are slow on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO

PROFILES = ("large-v2", "large-v3")
EXPECTED_KINDS = {
    "large-v2": {"asr": "faster-whisper", "diarization": "pyannote-pipeline-config",
                 "segmentation": "pyannote-segmentation", "embedding": "pyannote-embedding",
                 "alignment": "wav2vec2-torchaudio"},
    "large-v3": {"asr": "faster-whisper", "diarization": "pyannote-pipeline-config",
                 "segmentation": "pyannote-segmentation", "embedding": "pyannote-embedding",
                 "plda": "pyannote-plda", "alignment": "wav2vec2-torchaudio"},
}


def check_result(result: dict, profile: str) -> None:
    assert result["duration"] == pytest.approx(10.0, abs=0.05)
    words = [w for s in result["segments"] for w in s["words"]]
    assert words and all(w["speaker"].startswith("SPEAKER_") for w in words)
    assert all(0.0 <= w["start"] <= w["end"] <= 10.0 for w in words)
    assert result["speakers"] and result["diarization"]
    assert {t["speaker"] for t in result["diarization"]} == {s["label"] for s in result["speakers"]}
    models = result["models"]
    assert models["profile"] == profile
    for role, kind in EXPECTED_KINDS[profile].items():
        assert models[role]["kind"] == kind, role
    assert "vad" not in models  # no second VAD model: segmentation-3.0 gives the speech probability


@pytest.mark.parametrize("profile", PROFILES)
def test_cli_transcribes_10_s_with_a_production_profile(profile, profile_dirs, sample10, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "diarkit", "transcribe", str(sample10), "-o", str(out),
                           "--model-dir", str(profile_dirs[profile]), "--formats", "json", "--device", "cpu",
                           "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "sample10.json").read_text())
    check_result(result, profile)


# --- equivalence with pyannote's and whisperx's own code on the same stand-ins ------------

@pytest.fixture(scope="module")
def loaded(profile_dirs):
    from diarkit.pipeline import DiarkitPipeline

    return {p: DiarkitPipeline.from_model_dir(profile_dirs[p], device="cpu") for p in PROFILES}


def canonical(turns) -> list[tuple[float, float, int]]:
    """(start, end, speaker index by first appearance): the same segments and partition."""
    order: dict[str, int] = {}
    rows = []
    for start, end, label in sorted(turns):
        rows.append((round(start, 3), round(end, 3), order.setdefault(label, len(order))))
    return rows


def pyannote_reference(folder: Path, tmp_path: Path, plda: Path):
    """pyannote's own Pipeline.from_pretrained on the profile's diarization folder.

    A 3.1 config has no PLDA and pyannote 4 would fetch community-1's (gated, network) even
    though agglomerative clustering never uses it: the reference gets the stand-in's, in a
    copy of the folder; nothing else changes.
    """
    from pyannote.audio import Pipeline

    config = yaml.safe_load((folder / "config.yaml").read_text())
    if "plda" not in config["pipeline"]["params"]:
        copy = tmp_path / "diarization"
        shutil.copytree(folder, copy)
        shutil.copytree(plda, copy / "plda")
        config["pipeline"]["params"]["plda"] = "$model/plda"
        (copy / "config.yaml").write_text(yaml.safe_dump(config))
        folder = copy
    return Pipeline.from_pretrained(folder)


@pytest.mark.parametrize("profile,style", [("large-v2", "3.1"), ("large-v3", "community-1")])
def test_speaker_turns_equal_pyannotes_own_pipeline(profile, style, loaded, profile_dirs, standins, sample10,
                                                    tmp_path):
    import torch

    from diarkit import audio as audio_io

    config = yaml.safe_load((profile_dirs[profile] / "diarization" / "config.yaml").read_text())
    assert config["pipeline"]["params"]["clustering"] == (
        "AgglomerativeClustering" if style == "3.1" else "VBxClustering")
    pipeline = loaded[profile]
    samples = audio_io.decode(sample10)
    ours = pipeline.diarizer(samples, pipeline.segmenter(samples), uri="sample10")

    reference = pyannote_reference(profile_dirs[profile] / "diarization", tmp_path, standins.plda)
    with torch.inference_mode():
        output = reference({"waveform": torch.from_numpy(samples)[None], "sample_rate": 16000, "uri": "sample10"})
    theirs = [(seg.start, seg.end, label)
              for seg, _, label in output.speaker_diarization.itertracks(yield_label=True)]
    assert len(theirs) >= 2, "the stand-in gives too little to compare"
    assert canonical([(t.start, t.end, t.speaker) for t in ours.turns]) == canonical(theirs)


def test_word_times_equal_whisperx_align(loaded, profile_dirs, sample10):
    from diarkit import audio as audio_io
    from diarkit.compat import whisperx
    from diarkit.vad import speech_chunks

    pipeline = loaded["large-v3"]
    assert pipeline.aligner.name == "wav2vec2"
    samples = audio_io.decode(sample10)
    chunks = speech_chunks(pipeline.segmenter(samples))
    texts = pipeline.transcriber(samples, chunks, "en")
    assert texts
    ours = [(w.word, w.start, w.end) for words in pipeline.aligner(samples, texts, "en") for w in words]

    folder = profile_dirs["large-v3"] / "alignment" / "wav2vec2_base_960h"
    model, metadata = whisperx.load_align_model("en", "cpu", model_name="WAV2VEC2_ASR_BASE_960H",
                                                model_dir=str(folder))
    segments = [{"start": c.start, "end": c.end, "text": c.text} for c in texts]
    aligned = whisperx.align(segments, model, metadata, samples, "cpu")
    theirs = [(w["word"], round(w["start"], 3), round(w["end"], 3))
              for s in aligned["segments"] for w in s["words"] if "start" in w]
    assert ours and ours == theirs


# --- packed, moved, loaded with the network blocked ----------------------------------------

DRIVER = r'''
import json, logging, socket, sys
logging.basicConfig(level=logging.INFO)  # as the SageMaker toolkits do
attempts = []
def refuse(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(str(address))
        raise OSError("network blocked by the test")
    return original(self, address, *args)
original = socket.socket.connect
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
def no_dns(*args, **kwargs):
    attempts.append(f"getaddrinfo {args[:2]}")
    raise socket.gaierror("network blocked by the test")
socket.getaddrinfo = no_dns

model_dir, wav, out = sys.argv[1:4]
sys.path.insert(0, model_dir + "/code")
import inference
model = inference.model_fn(model_dir)
body, content_type = inference.transform_fn(model, open(wav, "rb").read(), "audio/wav", "application/json")
json.dump({"result": json.loads(body), "attempts": attempts}, open(out, "w"))
'''


@pytest.mark.parametrize("profile", PROFILES)
def test_packed_directory_runs_from_elsewhere_with_the_network_blocked(profile, profile_dirs, model_dir,
                                                                       sample10, tmp_path):
    staged = tmp_path / "staged"
    shutil.copytree(profile_dirs[profile], staged, copy_function=os.link)
    shutil.copytree(model_dir / "code", staged / "code", ignore=shutil.ignore_patterns("diarkit", "__pycache__"))
    archive = tmp_path / "model.tar.gz"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "package.py"), str(staged), "-o", str(archive),
                           "--level", "1", "-q"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.rmtree(staged)  # nothing may point back at where it was built

    elsewhere = tmp_path / "mnt" / "somewhere" / "model"
    elsewhere.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(elsewhere, filter="data")
    assert (elsewhere / "code" / "diarkit" / "assets" / "nltk_data").is_dir()
    report_file = tmp_path / "report.json"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NLTK_DATA")}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(elsewhere), str(sample10), str(report_file)],
                          capture_output=True, text=True, env={**clean, "DIARKIT_DEVICE": "cpu",
                                                              "HOME": str(tmp_path / "home")},
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "models loaded: device=cpu" in proc.stderr  # model_fn's load report
    report = json.loads(report_file.read_text())
    assert report["attempts"] == []
    check_result(report["result"], profile)


# --- a broken large-profile manifest fails before any model loads --------------------------

def _broken(profile_dirs, tmp_path, change) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(profile_dirs["large-v3"], copy, copy_function=os.link)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").unlink()  # a hard link to the shared directory's manifest
    change(copy, manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("case", ["missing-plda-file", "missing-wav2vec2", "unknown-kind"])
def test_broken_large_manifest_fails_in_under_2_s(case, profile_dirs, tmp_path):
    from diarkit.errors import ModelDirectoryError
    from diarkit.pipeline import DiarkitPipeline

    def change(copy, manifest):
        if case == "missing-plda-file":
            (copy / "diarization" / "plda" / "plda.npz").unlink()
        elif case == "missing-wav2vec2":
            next(copy.glob("alignment/*/*.pth")).unlink()
        else:
            next(a for a in manifest["artifacts"] if a["role"] == "plda")["kind"] = "pyannote-plda-v9"

    copy = _broken(profile_dirs, tmp_path, change)
    started = time.perf_counter()
    with pytest.raises(ModelDirectoryError) as error:
        DiarkitPipeline.from_model_dir(copy, device="cpu")
    assert time.perf_counter() - started < 2.0
    message = str(error.value)
    expected = {"missing-plda-file": "plda.npz", "missing-wav2vec2": "wav2vec2_fairseq_base_ls960_asr_ls960.pth",
                "unknown-kind": "pyannote-plda-v9"}[case]
    assert expected in message, message


def test_missing_wav2vec2_file_is_an_error_not_a_download(profile_dirs, tmp_path):
    """The loader itself (past the manifest check) refuses, naming the file."""
    from diarkit.errors import ModelDirectoryError
    from diarkit.models.manifest import ModelDirectory
    from diarkit.models.registry import LoadContext

    copy = _broken(profile_dirs, tmp_path, lambda copy, manifest: None)
    next(copy.glob("alignment/*/*.pth")).unlink()
    with pytest.raises(ModelDirectoryError, match="wav2vec2_fairseq_base_ls960_asr_ls960.pth"):
        ModelDirectory(copy).load("alignment", LoadContext())


def test_fetched_configs_use_model_relative_references(profile_dirs):
    for profile in PROFILES:
        text = (profile_dirs[profile] / "diarization" / "config.yaml").read_text()
        params = yaml.safe_load(text)["pipeline"]["params"]
        assert params["segmentation"] == "$model/segmentation"
        assert params["embedding"] == "$model/embedding"
        assert str(profile_dirs[profile]) not in text and "/opt/ml" not in text


def test_vad_reads_the_powerset_speech_probability(loaded, sample10):
    import torch

    from diarkit import audio as audio_io
    from diarkit.vad import speech_probability

    pipeline = loaded["large-v2"]
    assert pipeline.segmenter.powerset
    segmentation = pipeline.segmenter(audio_io.decode(sample10))
    assert segmentation.speech is not None
    logp = pipeline.segmenter.inference({"waveform": torch.from_numpy(audio_io.decode(sample10))[None],
                                         "sample_rate": 16000}).data
    assert np.allclose(segmentation.speech.data[..., 0], 1 - np.exp(logp[..., 0]))
    assert speech_probability(segmentation).data.shape[-1] == 1
