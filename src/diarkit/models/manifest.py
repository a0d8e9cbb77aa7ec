"""The model directory: every entry point loads models from here, never from a hub.

``manifest.json`` lists the artifacts by role (asr, segmentation, embedding, and optional
alignment, ...), the kind of each (the loader, ``diarkit.models.registry``), where each
came from, and every file's size and sha256, so that a directory can be checked before it
is packed or served. Reading a manifest checks every role and kind against the registry
and that every file is there, before any model loads. Hub profiles add a ``revision`` to
the source; the loader does not care where an artifact came from.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diarkit.errors import ModelDirectoryError

#: where every entry point looks for models unless told otherwise
DEFAULT_MODEL_DIR = os.environ.get("DIARKIT_MODEL_DIR", "model")
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1



def force_offline() -> None:
    """Make every hub client fail fast instead of reaching for the network."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ["PYANNOTE_METRICS_ENABLED"] = "0"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ArtifactFile:
    path: str  # relative to the artifact's path; "." when the artifact is this one file
    size: int
    sha256: str


@dataclass
class Artifact:
    role: str
    kind: str  # loader to use: faster-whisper, pyannote-segmentation, resemblyzer, ...
    path: str  # relative to the model directory
    source: dict[str, Any]
    files: list[ArtifactFile] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "kind": self.kind,
            "path": self.path,
            "source": self.source,
            "settings": self.settings,
            "files": [vars(f) for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Artifact":
        return cls(
            role=data["role"], kind=data["kind"], path=data["path"],
            source=data.get("source", {}), settings=data.get("settings", {}),
            files=[ArtifactFile(**f) for f in data.get("files", [])],
        )


@dataclass
class Manifest:
    profile: str
    artifacts: list[Artifact]
    created: str = ""
    format: int = MANIFEST_FORMAT

    def artifact(self, role: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.role == role), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "profile": self.profile,
            "created": self.created,
            "artifacts": [a.to_dict() for a in self.artifacts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        return cls(
            profile=data["profile"],
            artifacts=[Artifact.from_dict(a) for a in data["artifacts"]],
            created=data.get("created", ""),
            format=int(data.get("format", MANIFEST_FORMAT)),
        )


def describe_files(directory: Path) -> list[ArtifactFile]:
    """Size and sha256 of every file under ``directory`` (sorted, relative paths)."""
    if directory.is_file():
        return [ArtifactFile(".", directory.stat().st_size, sha256_file(directory))]
    return [
        ArtifactFile(p.relative_to(directory).as_posix(), p.stat().st_size, sha256_file(p))
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]


class ModelDirectory:
    """A model directory and its manifest."""

    def __init__(self, root: str | os.PathLike, *, check_kinds: bool = True):
        self.root = Path(root)
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ModelDirectoryError(
                "no manifest.json in the model directory",
                path=str(self.root),
                hint="create it with: python scripts/fetch_models.py --profile bundled --out model/",
            )
        try:
            self.manifest = Manifest.from_dict(json.loads(manifest_path.read_text("utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelDirectoryError(f"unreadable manifest.json ({exc})", path=str(manifest_path)) from exc
        self.manifest_path = manifest_path
        if check_kinds:  # tools that only check files (verify, package) read any manifest
            self.check_kinds()

    def check_kinds(self) -> None:
        """Every artifact's role and kind is in the registry (reading a manifest does this)."""
        from diarkit.models import registry

        where = str(self.manifest_path)
        for role in registry.REQUIRED_ROLES:
            if self.manifest.artifact(role) is None:
                raise ModelDirectoryError(f"manifest.json has no {role!r} artifact", path=where)
        seen: set[str] = set()
        for artifact in self.manifest.artifacts:
            registry.lookup(artifact.role, artifact.kind, where=where)
            if artifact.role in seen:
                raise ModelDirectoryError(f"manifest.json has two {artifact.role!r} artifacts", path=where)
            seen.add(artifact.role)

    def check_files(self) -> None:
        """Every file the manifest lists is there (no hashing): the first one missing is an error.

        The pipeline calls this before loading any model, so a broken directory fails in
        milliseconds instead of after gigabytes of weights; ``verify`` lists every problem.
        """
        for artifact in self.manifest.artifacts:
            base = self.root / artifact.path
            targets = [base if f.path == "." else base / f.path for f in artifact.files] or [base]
            for target in targets:
                if not target.exists():
                    raise ModelDirectoryError(
                        f"{artifact.role} artifact ({artifact.kind}) is missing "
                        f"{target.relative_to(self.root).as_posix()}",
                        path=str(self.root), hint="re-run scripts/fetch_models.py or check the archive")

    @property
    def profile(self) -> str:
        return self.manifest.profile

    def artifact(self, role: str) -> Artifact | None:
        return self.manifest.artifact(role)

    def path(self, role: str) -> Path:
        artifact = self.manifest.artifact(role)
        if artifact is None:
            raise ModelDirectoryError(f"no {role!r} artifact in the manifest", path=str(self.root))
        location = self.root / artifact.path
        if not location.exists():
            raise ModelDirectoryError(
                f"{role} model missing at {artifact.path}", path=str(self.root),
                hint="re-run scripts/fetch_models.py or check the archive",
            )
        return location

    def load(self, role: str, context) -> Any:
        """The model of one role, through its registry loader (``context``: a LoadContext)."""
        from diarkit.models import registry

        artifact = self.manifest.artifact(role)
        if artifact is None:
            raise ModelDirectoryError(f"no {role!r} artifact in the manifest", path=str(self.root))
        return registry.lookup(role, artifact.kind).load(self.path(role), artifact, context)

    def verify(self) -> list[str]:
        """Problems found (missing or changed files); empty when the directory is intact."""
        problems = []
        for artifact in self.manifest.artifacts:
            base = self.root / artifact.path
            for f in artifact.files:
                target = base if f.path == "." else base / f.path
                if not target.is_file():
                    problems.append(f"missing: {target.relative_to(self.root)}")
                elif target.stat().st_size != f.size or sha256_file(target) != f.sha256:
                    problems.append(f"changed: {target.relative_to(self.root)}")
        return problems

    def describe(self) -> dict[str, Any]:
        """What goes into a result's ``models`` field."""
        return {
            "profile": self.profile,
            **{a.role: {"kind": a.kind, **{k: v for k, v in a.source.items() if k != "path"}}
               for a in self.manifest.artifacts},
        }
