"""A speaker's voice as one embedding: pooled over its single-speaker speech.

Chunk embeddings of a few seconds are noisy; one embedding over all of a speaker's clean
speech is steady (the diarizer's split check relies on the same fact), so both enrollment
and matching embed pooled speech. Overlapped speech is left out: it carries two voices.
"""

from __future__ import annotations

import logging

import numpy as np

from diarkit.audio import SAMPLE_RATE, pooled_speech
from diarkit.result import SpeakerTurn

logger = logging.getLogger(__name__)

#: less single-speaker speech than this gives no embedding (too little to name anyone)
MIN_SECONDS = 2.0
#: longer speech is sampled in ten pieces spread over it: a voice is steady well before that
MAX_SECONDS = 120.0


def single_speaker_runs(turns: list[SpeakerTurn], num_samples: int,
                        sample_rate: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """For each speaker, the (start, end) sample runs where it is the only one speaking.

    A sweep over the turns' edges: no per-speaker mask of the file (one boolean per sample:
    on an hour with 40 speakers those masks come to 2.1 GiB).
    """
    labels = sorted({t.speaker for t in turns})
    events = []
    for t in turns:
        a = max(0, int(round(t.start * sample_rate)))
        b = min(num_samples, int(round(t.end * sample_rate)))
        if b > a:
            events += [(a, 1, t.speaker), (b, -1, t.speaker)]
    events.sort(key=lambda event: event[0])
    open_turns = dict.fromkeys(labels, 0)
    runs: dict[str, list[list[int]]] = {label: [] for label in labels}
    i = 0
    while i < len(events):
        position = events[i][0]
        while i < len(events) and events[i][0] == position:
            open_turns[events[i][2]] += events[i][1]
            i += 1
        speaking = [label for label, count in open_turns.items() if count > 0]
        if len(speaking) == 1 and i < len(events):
            own = runs[speaking[0]]
            if own and own[-1][1] == position:
                own[-1][1] = events[i][0]
            else:
                own.append([position, events[i][0]])
    return {label: np.array(r, dtype=np.int64).reshape(-1, 2) for label, r in runs.items()}


def pooled_embedding(encoder, speech: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Unit embedding of ``speech`` (already cut to one voice), or None when it is too short."""
    return runs_embedding(encoder, speech, np.array([[0, len(speech)]], dtype=np.int64), sample_rate)


def runs_embedding(encoder, samples: np.ndarray, runs: np.ndarray,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Unit embedding of one voice's ``runs`` of ``samples`` (at most ``MAX_SECONDS`` of it, in
    ten pieces), or None when they hold under ``MIN_SECONDS``."""
    if speech_seconds(runs, sample_rate) < MIN_SECONDS:
        return None
    speech = pooled_speech(samples, runs, int(MAX_SECONDS * sample_rate))
    import torch

    with torch.inference_mode():
        embedding = encoder(torch.from_numpy(np.ascontiguousarray(speech, dtype=np.float32))[None, None],
                            masks=None)[0]
    return None if np.isnan(embedding[0]) else embedding.astype(np.float32)


def speaker_embeddings(encoder, samples: np.ndarray, turns: list[SpeakerTurn],
                       sample_rate: int = SAMPLE_RATE) -> dict[str, tuple[np.ndarray | None, float]]:
    """{speaker: (pooled embedding or None, seconds of single-speaker speech)}."""
    out = {}
    for label, runs in single_speaker_runs(turns, samples.shape[0], sample_rate).items():
        out[label] = (runs_embedding(encoder, samples, runs, sample_rate), speech_seconds(runs, sample_rate))
    return out


def speech_seconds(runs: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    return float((runs[:, 1] - runs[:, 0]).sum()) / sample_rate


def clip_speech(segmenter, samples: np.ndarray, *, onset: float = 0.5, offset: float = 0.363) -> np.ndarray:
    """The speech of an enrollment clip (the segmentation model's voice activity), silence left out."""
    from diarkit.vad import speech_probability
    from diarkit.compat.whisperx import Binarize

    scores = speech_probability(segmenter(samples))
    regions = Binarize(onset=onset, offset=offset)(scores).get_timeline()
    pieces = [samples[int(r.start * SAMPLE_RATE):int(r.end * SAMPLE_RATE)] for r in regions]
    pieces = [p for p in pieces if len(p)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
