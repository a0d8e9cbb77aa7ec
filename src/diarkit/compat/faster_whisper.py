"""faster-whisper: the tokenizer, the cross-attention word alignment helpers and the silero VAD (1.2.x)."""

from __future__ import annotations

import os

from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import merge_punctuations
from faster_whisper.utils import get_assets_path
from faster_whisper.vad import SileroVADModel

__all__ = ["Tokenizer", "merge_punctuations", "WHISPER_MODEL_ATTRIBUTES", "SileroVADModel",
           "SILERO_VAD_PATH", "SILERO_WINDOW", "SILERO_CONTEXT"]

#: attributes of ``faster_whisper.WhisperModel`` diarkit uses for alignment and language checks
WHISPER_MODEL_ATTRIBUTES = ("feat_kwargs", "frames_per_second", "feature_extractor", "encode",
                            "find_alignment", "hf_tokenizer", "model", "supported_languages")

#: the silero VAD v6 ONNX model packaged with faster-whisper (pinned in requirements.txt)
SILERO_VAD_PATH = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
#: samples per silero frame at 16 kHz (one speech probability per 32 ms), and its left context
SILERO_WINDOW = 512
SILERO_CONTEXT = 64
