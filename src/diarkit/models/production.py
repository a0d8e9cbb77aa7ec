"""Loaders of the production profiles' artifacts (large-v2 / large-v3, fetched from the hub).

Each reads only the model directory: a missing file is a ``ModelDirectoryError`` naming it,
never a download (the libraries' own loaders would fetch what is missing).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from diarkit.errors import ModelDirectoryError

logger = logging.getLogger(__name__)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ModelDirectoryError(f"{what} is missing", path=str(path),
                                  hint="re-run scripts/fetch_models.py or check the archive")
    return path


def load_pyannote_embedding(path: Path, artifact, context):
    """Registry loader: a pyannote speaker embedding checkpoint (WeSpeaker ResNet34)."""
    from diarkit.compat.pyannote import Model

    checkpoint = path / "pytorch_model.bin" if path.is_dir() else path
    # a loaded Model, never a path string: pyannote picks an ONNX loader for paths with "wespeaker"
    model = Model.from_pretrained(str(_require(checkpoint, "pyannote embedding checkpoint")),
                                  map_location=torch.device(context.device))
    model.eval()
    return model.to(torch.device(context.device))


def load_pyannote_plda(path: Path, artifact, context):
    """Registry loader: a VBx PLDA folder (xvec_transform.npz, plda.npz)."""
    from diarkit.compat.pyannote import PLDA

    for name in ("xvec_transform.npz", "plda.npz"):
        _require(path / name, f"PLDA file {name}")
    return PLDA.from_pretrained(str(path))
