"""Local speaker segmentation, computed once per file and shared.

The pyannote segmentation model gives, for every chunk of a sliding window (5 s for v2,
10 s for segmentation-3.0), the frame-level activity of up to 3 local speakers. Voice
activity detection (aggregated over chunks) and diarization (the raw chunks) both read this
one output, so the model runs once per file instead of twice.

A powerset model (segmentation-3.0) outputs log-probabilities of speaker sets: the
diarization reads the same hard multi-label chunks pyannote's own pipeline uses, and VAD
reads the speech probability, 1 - p(no speaker).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diarkit.compat.pyannote import Inference, Model, Powerset, SlidingWindowFeature

from diarkit.audio import SAMPLE_RATE
from diarkit.memory import PeriodicRelease

logger = logging.getLogger(__name__)
# Lightning logs an INFO line on every load of this (old-format) checkpoint; nothing to act on
logging.getLogger("lightning.pytorch.utilities.migration.utils").setLevel(logging.WARNING)

#: batches of chunks between two returns of freed heap memory to the system (``PeriodicRelease``):
#: on the hour the slide grew +281/+327 MiB at 4, +219/+221 at 1 (5% slower), up to +1 069 without
RELEASE_EVERY_BATCHES = 4


@dataclass
class Segmentation:
    """Raw local segmentation: (num_chunks, num_frames, local_speakers) activations."""

    chunks: SlidingWindowFeature
    frames: "pyannote.core.SlidingWindow"  # noqa: F821 - receptive field of one output frame
    # (num_chunks, num_frames, 1) speech probability of a powerset model; None: VAD takes
    # the max over the local speakers of ``chunks``
    speech: SlidingWindowFeature | None = None
    # the chunks before the speech gate zeroed non-speech frames, kept when the speaker
    # embeddings are to read them (``SpeechGateOptions.embed_ungated``); None otherwise
    ungated: SlidingWindowFeature | None = None


class Segmenter:
    """The segmentation model slid over a file once; VAD and diarization share its output.

    ``step``: seconds between chunk starts; pyannote's 10% of the chunk for the bundled 5 s
    model. A longer step does less work (each frame is computed and embedded about
    chunk/step times) but the clustering was tuned at 0.5 s: 0.75 s found the exact speaker
    count on 16 of 20 simulations instead of 19, 1 s a third speaker on the sample
    (eval/BENCHMARK.md). ``step_ratio`` (a fraction of the chunk, as a pyannote pipeline
    config gives it) overrides it.
    """

    def __init__(self, model_path: str | Path, device: torch.device, *, step: float = 0.5,
                 step_ratio: float | None = None, batch_size: int = 32):
        self.model = Model.from_pretrained(str(model_path), map_location=device)
        self.model.eval()
        self.model.to(device)
        specifications = self.model.specifications
        duration = specifications.duration
        if step_ratio is None:
            step_ratio = min(1.0, step / duration)
        self.step_ratio = step_ratio
        self.powerset = specifications.powerset
        self.inference = Inference(
            self.model, duration=duration, step=step_ratio * duration,
            skip_aggregation=True, skip_conversion=self.powerset, batch_size=batch_size, device=device,
        )
        if self.powerset:
            self._powerset = Powerset(len(specifications.classes), specifications.powerset_max_classes)

    @property
    def frames(self):
        return self.model.receptive_field

    def __call__(self, audio: np.ndarray) -> Segmentation:
        waveform = torch.from_numpy(audio).unsqueeze(0)
        with torch.inference_mode():
            chunks = self.inference({"waveform": waveform, "sample_rate": SAMPLE_RATE},
                                    hook=PeriodicRelease(RELEASE_EVERY_BATCHES))
        if not self.powerset:
            return Segmentation(chunks=chunks, frames=self.frames)
        logp = torch.from_numpy(chunks.data)
        multilabel = self._powerset.to_multilabel(logp).numpy()  # what Inference's conversion gives
        speech = 1.0 - np.exp(chunks.data[..., :1])  # class 0 is the empty set
        return Segmentation(chunks=SlidingWindowFeature(multilabel, chunks.sliding_window), frames=self.frames,
                            speech=SlidingWindowFeature(speech, chunks.sliding_window))


def load_segmenter(path: Path, artifact, context) -> Segmenter:
    """Registry loader for a pyannote segmentation checkpoint."""
    return Segmenter(path, torch.device(context.device), step=context.segmentation_step,
                     step_ratio=context.segmentation_step_ratio)
