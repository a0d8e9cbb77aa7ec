"""Naming a result's speakers from a voice library: one-to-one, above a calibrated threshold.

Each diarized speaker's pooled single-speaker embedding is scored (cosine) against every
voice's centroid; the Hungarian assignment (scipy's ``linear_sum_assignment``) pairs
speakers and voices one-to-one for the largest total score, and a pair is kept only at or
above ``THRESHOLD``. So a voice names at most one speaker and a speaker gets at most one
name: two enrolled voices never end up as one label, and one voice never claims two
speakers. ``THRESHOLD`` was chosen on development episodes (``python -m eval voices``,
eval/RESULTS.md "Voice library").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from diarkit.result import TranscriptResult
from diarkit.voices.library import LoadedLibrary
from diarkit.voices.speech import speaker_embeddings

logger = logging.getLogger(__name__)

#: cosine between a speaker's pooled embedding and a voice centroid at which it is named
THRESHOLD = 0.80


@dataclass
class SpeakerScores:
    """Scores of one result's speakers against one library (rows: speakers, columns: voices)."""

    speakers: list[str]
    voices: list[str]
    scores: np.ndarray  # (speakers, voices); NaN where a speaker has too little clean speech
    seconds: dict[str, float]  # single-speaker speech per speaker

    def assign(self, threshold: float = THRESHOLD) -> dict[str, str]:
        """{speaker label: voice name} for the one-to-one pairs at or above ``threshold``."""
        if not self.speakers or not self.voices:
            return {}
        cost = np.where(np.isnan(self.scores), -10.0, self.scores)
        rows, cols = linear_sum_assignment(cost, maximize=True)
        return {self.speakers[r]: self.voices[c] for r, c in zip(rows, cols)
                if not np.isnan(self.scores[r, c]) and self.scores[r, c] >= threshold}

    def best(self, speaker: str) -> tuple[str | None, float | None]:
        row = self.scores[self.speakers.index(speaker)]
        if not len(row) or np.all(np.isnan(row)):
            return None, None
        j = int(np.nanargmax(row))
        return self.voices[j], float(row[j])


def score_speakers(encoder, samples: np.ndarray, result: TranscriptResult,
                   library: LoadedLibrary) -> SpeakerScores:
    pooled = speaker_embeddings(encoder, samples, result.turns)
    speakers = sorted(pooled)
    centroids = library.centroids()
    scores = np.full((len(speakers), len(library.voices)), np.nan, dtype=np.float32)
    for i, label in enumerate(speakers):
        embedding = pooled[label][0]
        if embedding is not None and len(library.voices):
            scores[i] = centroids @ embedding
    return SpeakerScores(speakers=speakers, voices=library.names, scores=scores,
                         seconds={label: pooled[label][1] for label in speakers})


def rename_speakers(result: TranscriptResult, names: dict[str, str]) -> None:
    """Every label in every part of the result (turns, segments, words, speakers), in place."""
    if not names:
        return
    for turn in result.turns:
        turn.speaker = names.get(turn.speaker, turn.speaker)
    for segment in result.segments:
        segment.speaker = names.get(segment.speaker, segment.speaker)
        for word in segment.words:
            word.speaker = names.get(word.speaker, word.speaker)
    for speaker in result.speakers:
        speaker.label = names.get(speaker.label, speaker.label)


def name_speakers(encoder, samples: np.ndarray, result: TranscriptResult, library: LoadedLibrary,
                  threshold: float = THRESHOLD) -> SpeakerScores:
    """Match, rename in place, and record each speaker's best match and score in ``speakers``."""
    scores = score_speakers(encoder, samples, result, library)
    names = scores.assign(threshold)
    for speaker in result.speakers:
        if speaker.label not in scores.speakers:
            continue
        best, score = scores.best(speaker.label)
        speaker.voice = {
            "diarization_label": speaker.label,
            "name": names.get(speaker.label),
            "best_match": best,
            "score": None if score is None else round(score, 4),
            "single_speaker_seconds": round(scores.seconds[speaker.label], 3),
        }
    rename_speakers(result, names)
    for name in (n for n in library.names if n not in names.values()):
        logger.debug("%s: voice %s not found", result.uri, name)
    result.options["voices"] = library.location
    result.options["voice_threshold"] = threshold
    result.warnings.extend(library.problems)
    logger.info("%s: %d of %d speakers named from %s", result.uri, len(names), len(result.speakers),
                library.location)
    return scores
