"""The pipeline's hook: name a result's speakers from the library a request names."""

from __future__ import annotations

import numpy as np

from diarkit.result import TranscriptResult
from diarkit.voices.library import EmbeddingModel, LibraryCache
from diarkit.voices.match import THRESHOLD, SpeakerScores, name_speakers


class VoiceNamer:
    """One per pipeline: its encoder and its cache of loaded libraries."""

    def __init__(self, model_dir, encoder, *, threshold: float = THRESHOLD, s3_client=None):
        self.encoder = encoder
        self.threshold = threshold
        self.model = EmbeddingModel.of(model_dir)
        self.libraries = LibraryCache(self.model, s3_client=s3_client)

    def __call__(self, result: TranscriptResult, samples: np.ndarray, location: str) -> SpeakerScores:
        library = self.libraries.get(location)
        return name_speakers(self.encoder, samples, result, library, self.threshold)
