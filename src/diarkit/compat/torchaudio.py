"""torchaudio: the file name behind a wav2vec2 pipeline bundle (2.8.x)."""

from __future__ import annotations

import posixpath

import torchaudio

__all__ = ["bundle_file", "BUNDLE_ATTRIBUTES"]

#: attributes of a ``torchaudio.pipelines.Wav2Vec2ASRBundle`` diarkit reads
BUNDLE_ATTRIBUTES = ("_path", "get_model", "get_labels")


def bundle_file(name: str) -> str:
    """The file a bundle loads from its ``model_dir`` (``wav2vec2_fairseq_base_ls960_asr_ls960.pth``)."""
    bundle = getattr(torchaudio.pipelines, name, None)
    if bundle is None or not hasattr(bundle, "_path"):
        raise ValueError(f"torchaudio has no wav2vec2 bundle {name!r}")
    return posixpath.basename(bundle._path)
