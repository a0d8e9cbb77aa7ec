"""faster-whisper: the tokenizer and the cross-attention word alignment helpers (1.2.x)."""

from __future__ import annotations

from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import merge_punctuations

__all__ = ["Tokenizer", "merge_punctuations", "WHISPER_MODEL_ATTRIBUTES"]

#: attributes of ``faster_whisper.WhisperModel`` diarkit uses for alignment and language checks
WHISPER_MODEL_ATTRIBUTES = ("feat_kwargs", "frames_per_second", "feature_extractor", "encode",
                            "find_alignment", "hf_tokenizer", "model", "supported_languages")
