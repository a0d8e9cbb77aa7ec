"""fetch_models.py hub profiles: the tables, --dry-run, the config rewrite, and fetches
against a hub that is unreachable or served on loopback (never any other address)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from scripts.fetch_models import PROFILES, FetchError, model_reference, rewrite_pipeline_config, validate_profile

FETCH = REPO / "scripts" / "fetch_models.py"
HUB_PROFILES = ("large-v2", "large-v3")

# The structure of pyannote/speaker-diarization-3.1's config.yaml and of community-1's.
CONFIG_31 = """\
version: 3.1.0

pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: AgglomerativeClustering
    embedding: pyannote/wespeaker-voxceleb-resnet34-LM
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    segmentation: pyannote/segmentation-3.0
    segmentation_batch_size: 32

params:
  clustering:
    method: centroid
    min_cluster_size: 12
    threshold: 0.7045654963945799
  segmentation:
    min_duration_off: 0.0
"""
CONFIG_COMMUNITY_1 = """\
dependencies:
  pyannote.audio: 4.0.0

pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: VBxClustering
    embedding: $model/embedding
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    plda: $model/plda
    segmentation: $model/segmentation
    segmentation_batch_size: 32

params:
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
  segmentation:
    min_duration_off: 0.0
"""


def hub_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The test process's environment without tokens or offline switches, hub on loopback."""
    assert re.match(r"http://127\.0\.0\.1:\d+$", endpoint)
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), NO_PROXY="127.0.0.1", **extra)
    return env


def run_fetch(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(FETCH), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return proc, time.monotonic() - started


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the tables ----------------------------------------------------------------------------

@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_are_consistent_tables(profile):
    entries = PROFILES[profile]
    validate_profile(profile, entries)
    roles = {e["role"] for e in entries}
    assert {"asr", "segmentation", "embedding"} <= roles
    for entry in entries:
        assert set(entry) <= {"role", "kind", "source", "target", "settings", "rewrite", "size_mb"}
        source = entry["source"]
        if source["type"] == "hf":
            assert re.fullmatch(r"[0-9a-f]{40}", source["revision"]), f"{source['repo']} is not pinned to a commit"
            assert source["files"] and isinstance(source["gated"], bool)
            assert source["gated"] == (source["repo"] in ("pyannote/speaker-diarization-3.1",
                                                          "pyannote/segmentation-3.0",
                                                          "pyannote/speaker-diarization-community-1"))
        # pyannote picks its ONNX wespeaker loader for any path containing "wespeaker"
        assert "wespeaker" not in entry["target"]


def test_hub_profiles_follow_the_design():
    def by_role(profile):
        return {e["role"]: e for e in PROFILES[profile]}

    v2, v3 = by_role("large-v2"), by_role("large-v3")
    assert v2["asr"]["source"]["repo"] == "Systran/faster-whisper-large-v2"
    assert v3["asr"]["source"]["repo"] == "Systran/faster-whisper-large-v3"
    assert v2["diarization"]["source"]["repo"] == "pyannote/speaker-diarization-3.1"
    assert v2["segmentation"]["source"]["repo"] == "pyannote/segmentation-3.0"
    assert v2["embedding"]["source"]["repo"] == "pyannote/wespeaker-voxceleb-resnet34-LM"
    assert "vad" not in v2  # segmentation-3.0's powerset output is the VAD (one pass per file)
    assert {v3[r]["source"]["repo"] for r in ("diarization", "segmentation", "embedding", "plda")} == {
        "pyannote/speaker-diarization-community-1"}
    for profile in (v2, v3):
        assert profile["alignment"]["source"] == {"type": "torchaudio", "bundle": "WAV2VEC2_ASR_BASE_960H",
                                                  "file": "wav2vec2_fairseq_base_ls960_asr_ls960.pth"}


def test_torchaudio_bundle_file_matches_the_table():
    import torchaudio

    for profile in HUB_PROFILES:
        source = next(e["source"] for e in PROFILES[profile] if e["source"]["type"] == "torchaudio")
        assert Path(getattr(torchaudio.pipelines, source["bundle"])._path).name == source["file"]


def test_a_table_with_nested_targets_is_refused():
    entries = [dict(PROFILES["bundled"][0]), {**PROFILES["bundled"][1], "target": "asr/tiny.en/seg.bin"}]
    with pytest.raises(FetchError, match="contains another artifact"):
        validate_profile("broken", entries)


# --- --dry-run -----------------------------------------------------------------------------

@pytest.mark.parametrize("profile", HUB_PROFILES)
def test_dry_run_lists_every_artifact_without_network(profile, tmp_path):
    out = tmp_path / "model"
    proc, elapsed = run_fetch("--profile", profile, "--out", str(out), "--dry-run",
                              env=hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}"))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for entry in PROFILES[profile]:
        source = entry["source"]
        assert re.search(rf"^  {re.escape(entry['role'])}\s+{re.escape(entry['kind'])}\s", text, re.M), entry["role"]
        if source["type"] == "hf":
            assert f"{source['repo']}@{source['revision']}" in text
            for name in source["files"]:
                assert f"{name} -> {entry['target']}" in text
        elif source["type"] == "torchaudio":
            assert source["bundle"] in text and f"{entry['target']}/{source['file']}" in text
        else:
            assert f"-> {entry['target']}" in text
        for key, relative in entry.get("rewrite", {}).items():
            assert f"pipeline.params.{key} -> {model_reference(entry['target'], relative)}" in text
    assert "gated, needs a token: " in text
    assert not out.exists() and not list(tmp_path.glob(".fetch-*"))


# --- the pipeline config rewrite -----------------------------------------------------------

def test_rewrite_points_the_31_config_at_the_model_directory():
    entry = next(e for e in PROFILES["large-v2"] if e["role"] == "diarization")
    config = yaml.safe_load(rewrite_pipeline_config(CONFIG_31, entry["rewrite"], entry["target"]))
    params = config["pipeline"]["params"]
    # relative to the config's folder: the directory loads wherever it is mounted
    assert params["segmentation"] == "$model/segmentation"
    assert params["embedding"] == "$model/embedding"
    original = yaml.safe_load(CONFIG_31)
    for key in ("clustering", "embedding_batch_size", "embedding_exclude_overlap", "segmentation_batch_size"):
        assert params[key] == original["pipeline"]["params"][key]
    assert config["params"] == original["params"] and config["version"] == "3.1.0"
    assert config["pipeline"]["name"] == "pyannote.audio.pipelines.SpeakerDiarization"


def test_rewrite_replaces_model_references_of_community_1():
    entry = next(e for e in PROFILES["large-v3"] if e["role"] == "diarization")
    text = rewrite_pipeline_config(CONFIG_COMMUNITY_1, entry["rewrite"], entry["target"])
    params = yaml.safe_load(text)["pipeline"]["params"]
    assert (params["plda"], params["segmentation"], params["embedding"]) == (
        "$model/plda", "$model/segmentation", "$model/embedding")
    assert "/opt/ml" not in text and "pyannote/" not in text.replace("pyannote.audio", "")


def test_rewrite_refuses_a_config_that_would_still_reach_the_hub():
    with pytest.raises(FetchError, match="still points outside the model directory: embedding"):
        rewrite_pipeline_config(CONFIG_31, {"segmentation": "diarization/segmentation"}, "diarization/config.yaml")
    with pytest.raises(FetchError, match="no pipeline.params.plda"):
        rewrite_pipeline_config(CONFIG_31, {"plda": "diarization/plda"}, "diarization/config.yaml")
    with pytest.raises(FetchError, match="not inside diarization/"):
        rewrite_pipeline_config(CONFIG_31, {"segmentation": "segmentation", "embedding": "diarization/embedding"},
                                "diarization/config.yaml")


# --- failing fast and clean ----------------------------------------------------------------

def assert_one_line_error(proc, elapsed, out: Path, *needles: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert elapsed < 30, f"took {elapsed:.1f} s"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fetch_models: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists(), "a model directory was left behind"
    assert not list(out.parent.glob(".fetch-*")), "a staging folder was left behind"
    return lines[0]


def test_unreachable_hub_fails_fast_and_leaves_no_model_directory(tmp_path):
    out = tmp_path / "model"
    endpoint = f"http://127.0.0.1:{closed_port()}"
    proc, elapsed = run_fetch("--profile", "large-v2", "--out", str(out), "--token", "hf_not_a_real_token",
                              env=hub_env(tmp_path, endpoint))
    assert_one_line_error(proc, elapsed, out, f"cannot reach the Hugging Face hub at {endpoint}",
                          "Connection refused")


def test_a_hub_that_never_answers_is_given_up_on_in_time(tmp_path):
    out = tmp_path / "model"
    with socket.socket() as silent:  # accepts connections (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc, elapsed = run_fetch("--profile", "large-v3", "--out", str(out), "--token", "hf_not_a_real_token",
                                  "--timeout", "4", env=hub_env(tmp_path, endpoint))
    line = assert_one_line_error(proc, elapsed, out, endpoint)
    assert elapsed < 10 and ("timed out" in line or "no answer" in line), line


def test_gated_model_without_a_token_fails_before_any_download(tmp_path, fake_hub):
    out = tmp_path / "model"
    proc, elapsed = run_fetch("--profile", "large-v3", "--out", str(out), env=hub_env(tmp_path, fake_hub.url))
    assert_one_line_error(proc, elapsed, out, "pyannote/speaker-diarization-community-1 is gated", "--token",
                          "HF_TOKEN")
    assert fake_hub.requests == [], "the hub was contacted before the token check"


# --- a hub on loopback: the whole fetch, for real ------------------------------------------

class FakeHub(ThreadingHTTPServer):
    """Answers /{repo}/resolve/{revision}/{file} like the hub does (HEAD and GET)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.gated: set[str] = set()
        self.claimed_sizes: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, repo: str, revision: str, name: str, content: bytes) -> None:
        self.files[(repo, revision, name)] = content


class HubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def answer(self, body: bool) -> None:
        hub: FakeHub = self.server
        hub.requests.append((self.command, self.path))
        match = re.match(r"^/(.+?/.+?)/resolve/([^/]+)/(.+)$", self.path)
        if not match:
            return self.error(404, "RepoNotFound", "no such repo")
        repo, revision, name = match.groups()
        if repo in hub.gated:
            return self.error(403, "GatedRepo", f"Access to model {repo} is restricted and you are not in the "
                                                "authorized list.")
        content = hub.files.get((repo, revision, name))
        if content is None:
            return self.error(404, "EntryNotFound", f"{name} does not exist")
        lfs = name.endswith((".bin", ".npz"))
        etag = hashlib.sha256(content).hexdigest() if lfs else hashlib.sha1(content).hexdigest()
        self.send_response(200)
        self.send_header("X-Repo-Commit", revision)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", str(hub.claimed_sizes.get(name, len(content))))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def error(self, status: int, code: str, message: str) -> None:
        payload = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def do_HEAD(self):
        self.answer(body=False)

    def do_GET(self):
        self.answer(body=True)


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    thread = threading.Thread(target=hub.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield hub
    hub.shutdown()
    hub.server_close()


REV = "0123456789abcdef0123456789abcdef01234567"
MINI_PROFILE = {
    "mini-hub": [
        {"role": "asr", "kind": "faster-whisper",
         "source": {"type": "hf", "repo": "acme/whisper-mini", "revision": REV,
                    "files": ["config.json", "model.bin"], "gated": False},
         "target": "asr/mini"},
        {"role": "diarization", "kind": "pyannote-pipeline-config",
         "source": {"type": "hf", "repo": "pyannote/speaker-diarization-3.1", "revision": REV,
                    "files": ["config.yaml"], "gated": True},
         "target": "diarization/config.yaml",
         "rewrite": {"segmentation": "diarization/segmentation", "embedding": "diarization/embedding"}},
        {"role": "segmentation", "kind": "pyannote-segmentation",
         "source": {"type": "hf", "repo": "pyannote/segmentation-3.0", "revision": REV,
                    "files": ["pytorch_model.bin"], "gated": True},
         "target": "diarization/segmentation/pytorch_model.bin"},
        {"role": "embedding", "kind": "pyannote-embedding",
         "source": {"type": "hf", "repo": "acme/community", "revision": REV,
                    "files": ["embedding/pytorch_model.bin"], "subfolder": "embedding", "gated": False},
         "target": "diarization/embedding/pytorch_model.bin"},
        {"role": "plda", "kind": "pyannote-plda",
         "source": {"type": "hf", "repo": "acme/community", "revision": REV,
                    "files": ["plda/plda.npz", "plda/xvec_transform.npz"], "subfolder": "plda", "gated": False},
         "target": "diarization/plda"},
    ],
}


@pytest.fixture
def mini_hub(fake_hub, tmp_path):
    files = {("acme/whisper-mini", "config.json"): b'{"alignment_heads": []}\n',
             ("acme/whisper-mini", "model.bin"): os.urandom(300_000),
             ("pyannote/speaker-diarization-3.1", "config.yaml"): CONFIG_31.encode(),
             ("pyannote/segmentation-3.0", "pytorch_model.bin"): os.urandom(50_000),
             ("acme/community", "embedding/pytorch_model.bin"): os.urandom(70_000),
             ("acme/community", "plda/plda.npz"): os.urandom(1_000),
             ("acme/community", "plda/xvec_transform.npz"): os.urandom(2_000)}
    for (repo, name), content in files.items():
        fake_hub.add(repo, REV, name, content)
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps(MINI_PROFILE))
    fake_hub.contents = files
    fake_hub.profiles = profiles
    return fake_hub


def mini_fetch(tmp_path, hub, out, *extra):
    return run_fetch("--profiles", str(hub.profiles), "--profile", "mini-hub", "--out", str(out),
                     "--token", "hf_test", *extra, env=hub_env(tmp_path, hub.url))


def test_hub_fetch_writes_rewritten_config_and_manifest_then_reuses_verified_files(tmp_path, mini_hub):
    out = tmp_path / "model"
    proc, _ = mini_fetch(tmp_path, mini_hub, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "asr/mini/model.bin").read_bytes() == mini_hub.contents[("acme/whisper-mini", "model.bin")]
    assert (out / "diarization/plda/xvec_transform.npz").read_bytes() == mini_hub.contents[
        ("acme/community", "plda/xvec_transform.npz")]
    assert (out / "diarization/embedding/pytorch_model.bin").is_file()
    params = yaml.safe_load((out / "diarization/config.yaml").read_text())["pipeline"]["params"]
    assert params["segmentation"] == "$model/segmentation" and params["embedding"] == "$model/embedding"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"] == "mini-hub"
    roles = {a["role"]: a for a in manifest["artifacts"]}
    assert roles["segmentation"]["source"]["revision"] == REV
    assert roles["segmentation"]["source"]["repo"] == "pyannote/segmentation-3.0"
    assert roles["diarization"]["settings"]["rewrite"] == {"segmentation": "$model/segmentation",
                                                           "embedding": "$model/embedding"}
    config_file = roles["diarization"]["files"][0]
    assert config_file["path"] == "." and config_file["sha256"] == hashlib.sha256(
        (out / "diarization/config.yaml").read_bytes()).hexdigest()
    assert not list(out.glob(".fetch-*")) and not (out / ".download").exists()
    verify = subprocess.run([sys.executable, str(FETCH), "--verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout

    # again: everything verifies, so nothing is asked of the hub and no file is rewritten
    inode = (out / "asr/mini/model.bin").stat().st_ino
    mini_hub.requests.clear()
    proc, _ = mini_fetch(tmp_path, mini_hub, out)
    assert proc.returncode == 0, proc.stderr
    assert mini_hub.requests == []
    assert (out / "asr/mini/model.bin").stat().st_ino == inode

    # a damaged file: only that one is fetched again
    with open(out / "diarization/segmentation/pytorch_model.bin", "r+b") as handle:
        handle.write(b"XX")
    proc, _ = mini_fetch(tmp_path, mini_hub, out)
    assert proc.returncode == 0, proc.stderr
    fetched = sorted({path for _, path in mini_hub.requests})
    assert fetched == [f"/pyannote/segmentation-3.0/resolve/{REV}/pytorch_model.bin"]
    assert (out / "asr/mini/model.bin").stat().st_ino == inode
    assert subprocess.run([sys.executable, str(FETCH), "--verify", str(out)], capture_output=True).returncode == 0


def test_gated_model_without_access_is_one_line(tmp_path, mini_hub):
    mini_hub.gated.add("pyannote/segmentation-3.0")
    out = tmp_path / "model"
    proc, elapsed = mini_fetch(tmp_path, mini_hub, out)
    line = assert_one_line_error(proc, elapsed, out, "pyannote/segmentation-3.0 is gated and this token has no "
                                                     "access", f"{mini_hub.url}/pyannote/segmentation-3.0")
    assert "Traceback" not in line
    assert not [r for r in mini_hub.requests if r[0] == "GET"], "downloads started before access was checked"


def test_not_enough_disk_space_is_found_before_downloading(tmp_path, mini_hub):
    mini_hub.claimed_sizes["model.bin"] = 10 ** 16  # a 10 PB model
    out = tmp_path / "model"
    proc, elapsed = mini_fetch(tmp_path, mini_hub, out)
    assert_one_line_error(proc, elapsed, out, "not enough disk space", "GB free")
    assert not [r for r in mini_hub.requests if r[0] == "GET"]


def test_a_failed_fetch_leaves_an_existing_directory_as_it_was(tmp_path, mini_hub):
    out = tmp_path / "model"
    assert mini_fetch(tmp_path, mini_hub, out)[0].returncode == 0
    before = sorted((p.relative_to(out).as_posix(), p.stat().st_ino) for p in out.rglob("*"))
    (out / "asr/mini/model.bin").unlink()
    mini_hub.gated.add("acme/whisper-mini")
    proc, _ = mini_fetch(tmp_path, mini_hub, out)
    assert proc.returncode == 1 and "acme/whisper-mini is gated" in proc.stderr
    after = sorted((p.relative_to(out).as_posix(), p.stat().st_ino) for p in out.rglob("*"))
    assert after == [item for item in before if item[0] != "asr/mini/model.bin"]


# --- the real profiles' hub artifacts, as stand-ins with real checkpoint bytes -------------

@pytest.mark.parametrize("profile", HUB_PROFILES)
def test_fetched_standin_profile_loads_and_runs(profile, fake_hub, standins, sample10, tmp_path):
    """The profile's own hub entries (pinned repos, revisions, files, rewrite), served on loopback
    with the stand-ins' checkpoint bytes; the fetched directory then loads and transcribes.

    Two entries differ from the real profile: the ASR is the bundled tiny.en (a package copy
    instead of 3 GB from the hub) and the torchaudio wav2vec2 bundle is left out (torchaudio
    downloads it from download.pytorch.org, which a loopback test cannot stand in for; the
    wav2vec2 loader is covered by tests/test_production_profiles.py).
    """
    entries = [PROFILES["bundled"][0] if e["role"] == "asr" else e
               for e in PROFILES[profile] if e["source"]["type"] != "torchaudio"]
    revisions = {e["source"]["repo"]: e["source"]["revision"] for e in entries if e["source"]["type"] == "hf"}
    for (repo, name), path in standins.hub_files().items():
        if repo in revisions:
            fake_hub.add(repo, revisions[repo], name, path.read_bytes())
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps({f"{profile}-standin": entries}))
    out = tmp_path / "model"
    proc, _ = run_fetch("--profiles", str(profiles), "--profile", f"{profile}-standin", "--out", str(out),
                        "--token", "hf_test", "-q", env=hub_env(tmp_path, fake_hub.url), timeout=120)
    assert proc.returncode == 0, proc.stderr
    served = {(repo, name) for repo, name in standins.hub_files()}
    asked = {tuple(m.groups()) for _, path in fake_hub.requests
             if (m := re.match(r"^/(.+?/.+?)/resolve/[^/]+/(.+)$", path))}
    assert asked <= served and asked  # only the profile's own files, nothing else

    from diarkit.pipeline import DiarkitPipeline

    pipeline = DiarkitPipeline.from_model_dir(out, device="cpu")
    result = pipeline.transcribe(sample10).to_dict()
    assert result["models"]["diarization"]["kind"] == "pyannote-pipeline-config"
    assert result["models"]["diarization"]["repo"] in ("pyannote/speaker-diarization-3.1",
                                                       "pyannote/speaker-diarization-community-1")
    assert result["segments"] and result["diarization"]
