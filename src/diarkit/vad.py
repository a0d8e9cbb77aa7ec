"""Voice activity detection: speech regions, and the chunks Whisper transcribes.

Speech probability is the max over local speakers of the shared segmentation,
aggregated over overlapping chunks (what pyannote's VoiceActivityDetection does).
Binarization and the cut into <= 30 s chunks reuse whisperx's implementation, so
chunking matches WhisperX's published behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from diarkit.compat.pyannote import Inference, SlidingWindowFeature
from diarkit.compat.whisperx import Binarize, merge_vad_chunks

from diarkit.models.segmentation import Segmentation


@dataclass(frozen=True)
class SpeechChunk:
    """A stretch of audio sent to Whisper as one item of a batch."""

    start: float
    end: float


def speech_probability(segmentation: Segmentation) -> SlidingWindowFeature:
    chunks = segmentation.chunks
    if segmentation.speech is not None:  # powerset model: its own speech probability
        per_chunk = segmentation.speech
    else:
        per_chunk = SlidingWindowFeature(np.max(chunks.data, axis=-1, keepdims=True), chunks.sliding_window)
    return Inference.aggregate(per_chunk, segmentation.frames, skip_average=False)


def speech_chunks(segmentation: Segmentation, *, onset: float = 0.5, offset: float = 0.363,
                  chunk_size: float = 30.0) -> list[SpeechChunk]:
    """Speech regions merged into chunks of at most ``chunk_size`` seconds."""
    scores = speech_probability(segmentation)
    regions = Binarize(onset=onset, offset=offset, max_duration=chunk_size)(scores).get_timeline()
    if not regions:
        return []
    merged = merge_vad_chunks(regions, chunk_size, onset, offset)
    return [SpeechChunk(round(m["start"], 3), round(m["end"], 3)) for m in merged if m["end"] > m["start"]]
