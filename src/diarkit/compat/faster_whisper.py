"""faster-whisper: the tokenizer, the cross-attention word alignment helpers and the silero VAD (1.2.x)."""

from __future__ import annotations

import os

import numpy as np

from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import merge_punctuations
from faster_whisper.utils import get_assets_path
from faster_whisper.vad import SileroVADModel

__all__ = ["Tokenizer", "merge_punctuations", "storage_view", "WHISPER_MODEL_ATTRIBUTES", "SileroVADModel",
           "SILERO_VAD_PATH", "SILERO_WINDOW", "SILERO_CONTEXT", "silero_probabilities"]

#: attributes of ``faster_whisper.WhisperModel`` diarkit uses for alignment and language checks
WHISPER_MODEL_ATTRIBUTES = ("feat_kwargs", "frames_per_second", "feature_extractor", "encode",
                            "find_alignment", "hf_tokenizer", "model", "supported_languages")


def storage_view(array: np.ndarray):
    """A CTranslate2 StorageView over ``array``, what ``WhisperModel.find_alignment`` takes as
    the encoder output (no copy; the view holds a reference to the array)."""
    import ctranslate2

    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))


#: the silero VAD v6 ONNX model packaged with faster-whisper (pinned in requirements.txt)
SILERO_VAD_PATH = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
#: samples per silero frame at 16 kHz (one speech probability per 32 ms), and its left context
SILERO_WINDOW = 512
SILERO_CONTEXT = 64


def silero_probabilities(model: SileroVADModel, audio: np.ndarray, batch_windows: int = 1024) -> np.ndarray:
    """``SileroVADModel.__call__`` with bounded memory: same probabilities, same state carried.

    faster-whisper copies the whole file into (frames, 576) windows and runs 10 000 frames per
    ONNX call (320 s of audio): about 0.7 GB of working memory on an hour. Here each batch of
    ``batch_windows`` frames is cut from ``audio`` when it is run, and only the last batch is
    padded with zeros to whole frames (what faster-whisper's caller does to the whole file,
    a copy of the file: 230 MB on an hour). Like faster-whisper, the first frame's context is
    zeros and the last frame's last 64 samples are zeroed.
    ``audio``: 1-D float32 at 16 kHz, any length; one probability per started 512 samples.
    """
    if audio.ndim != 1:
        raise ValueError("silero input must be 1-D")
    frames = -(-audio.shape[0] // SILERO_WINDOW)
    h = np.zeros((1, 1, 128), dtype=np.float32)
    c = np.zeros((1, 1, 128), dtype=np.float32)
    outputs = []
    for first in range(0, frames, batch_windows):
        last = min(frames, first + batch_windows)
        lo = max(0, first * SILERO_WINDOW - SILERO_CONTEXT)
        piece = np.array(audio[lo:last * SILERO_WINDOW], dtype=np.float32)
        if first == 0:
            piece = np.concatenate([np.zeros(SILERO_CONTEXT, dtype=np.float32), piece])
        if last == frames:
            piece = np.pad(piece, (0, -(piece.shape[0] - SILERO_CONTEXT) % SILERO_WINDOW))
            piece[-SILERO_CONTEXT:] = 0.0
        # frame i of the batch: its 64 context samples then its 512 samples
        windows = np.lib.stride_tricks.sliding_window_view(piece, SILERO_WINDOW + SILERO_CONTEXT)[::SILERO_WINDOW]
        output, h, c = model.session.run(None, {"input": np.ascontiguousarray(windows), "h": h, "c": c})
        outputs.append(np.asarray(output).reshape(-1))
    return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)
