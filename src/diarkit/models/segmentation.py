"""Local speaker segmentation, computed once per file and shared.

The pyannote segmentation model gives, for every 5 s chunk of a sliding window, the
frame-level activity of up to 3 local speakers. Voice activity detection (max over
speakers, aggregated over chunks) and diarization (the raw chunks) both read this one
output, so the model runs once per file instead of twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diarkit.compat.pyannote import Inference, Model, SlidingWindowFeature

from diarkit.audio import SAMPLE_RATE

logger = logging.getLogger(__name__)
# Lightning logs an INFO line on every load of this (old-format) checkpoint; nothing to act on
logging.getLogger("lightning.pytorch.utilities.migration.utils").setLevel(logging.WARNING)


@dataclass
class Segmentation:
    """Raw local segmentation: (num_chunks, num_frames, local_speakers) activations."""

    chunks: SlidingWindowFeature
    frames: "pyannote.core.SlidingWindow"  # noqa: F821 - receptive field of one output frame


class Segmenter:
    def __init__(self, model_path: str | Path, device: torch.device, *, step_ratio: float = 0.1,
                 batch_size: int = 32):
        self.model = Model.from_pretrained(str(model_path), map_location=device)
        self.model.eval()
        self.model.to(device)
        duration = self.model.specifications.duration
        self.step_ratio = step_ratio
        self.inference = Inference(
            self.model, duration=duration, step=step_ratio * duration,
            skip_aggregation=True, batch_size=batch_size, device=device,
        )

    @property
    def frames(self):
        return self.model.receptive_field

    def __call__(self, audio: np.ndarray) -> Segmentation:
        waveform = torch.from_numpy(audio).unsqueeze(0)
        with torch.inference_mode():
            chunks = self.inference({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        return Segmentation(chunks=chunks, frames=self.frames)


def load_segmenter(path: Path, artifact, context) -> Segmenter:
    """Registry loader for a pyannote segmentation checkpoint."""
    return Segmenter(path, torch.device(context.device))
