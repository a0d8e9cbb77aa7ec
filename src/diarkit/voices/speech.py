"""A speaker's voice as one embedding: pooled over its single-speaker speech.

Chunk embeddings of a few seconds are noisy; one embedding over all of a speaker's clean
speech is steady (the diarizer's split check relies on the same fact), so both enrollment
and matching embed pooled speech. Overlapped speech is left out: it carries two voices.
"""

from __future__ import annotations

import logging

import numpy as np

from diarkit.audio import SAMPLE_RATE
from diarkit.result import SpeakerTurn

logger = logging.getLogger(__name__)

#: less single-speaker speech than this gives no embedding (too little to name anyone)
MIN_SECONDS = 2.0
#: longer speech is sampled in ten pieces spread over it: a voice is steady well before that
MAX_SECONDS = 120.0


def single_speaker_masks(turns: list[SpeakerTurn], num_samples: int,
                         sample_rate: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """For each speaker, the samples where it is the only one speaking."""
    labels = sorted({t.speaker for t in turns})
    active = {label: np.zeros(num_samples, dtype=bool) for label in labels}
    for t in turns:
        a = max(0, int(round(t.start * sample_rate)))
        b = min(num_samples, int(round(t.end * sample_rate)))
        if b > a:
            active[t.speaker][a:b] = True
    count = np.zeros(num_samples, dtype=np.int16)
    for mask in active.values():
        count += mask
    return {label: mask & (count == 1) for label, mask in active.items()}


def pooled_embedding(encoder, speech: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Unit embedding of ``speech`` (already cut to one voice), or None when it is too short."""
    if len(speech) < MIN_SECONDS * sample_rate:
        return None
    limit = int(MAX_SECONDS * sample_rate)
    if len(speech) > limit:
        piece, take = len(speech) // 10, limit // 10
        speech = np.concatenate([speech[i * piece:i * piece + take] for i in range(10)])
    import torch

    with torch.inference_mode():
        embedding = encoder(torch.from_numpy(np.ascontiguousarray(speech, dtype=np.float32))[None, None],
                            masks=None)[0]
    return None if np.isnan(embedding[0]) else embedding.astype(np.float32)


def speaker_embeddings(encoder, samples: np.ndarray, turns: list[SpeakerTurn],
                       sample_rate: int = SAMPLE_RATE) -> dict[str, tuple[np.ndarray | None, float]]:
    """{speaker: (pooled embedding or None, seconds of single-speaker speech)}."""
    out = {}
    for label, mask in single_speaker_masks(turns, samples.shape[0], sample_rate).items():
        speech = samples[mask]
        out[label] = (pooled_embedding(encoder, speech, sample_rate), len(speech) / sample_rate)
    return out


def clip_speech(segmenter, samples: np.ndarray, *, onset: float = 0.5, offset: float = 0.363) -> np.ndarray:
    """The speech of an enrollment clip (the segmentation model's voice activity), silence left out."""
    from diarkit.vad import speech_probability
    from diarkit.compat.whisperx import Binarize

    scores = speech_probability(segmenter(samples))
    regions = Binarize(onset=onset, offset=offset)(scores).get_timeline()
    pieces = [samples[int(r.start * SAMPLE_RATE):int(r.end * SAMPLE_RATE)] for r in regions]
    pieces = [p for p in pieces if len(p)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
