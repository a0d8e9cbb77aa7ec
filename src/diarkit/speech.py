"""Speech gate: frames where nobody speaks are taken out of the shared segmentation.

Why: the pyannote segmentation model answers "which local speaker is active" and fires on
music and sound effects (scores, stingers, doors), so music became speaker turns and often
an extra speaker. The silero VAD (packaged with faster-whisper) tells speech from music
much better (eval/RESULTS.md, issue 20). Its decision multiplies the segmentation's
activations before anything reads them, so one gated segmentation feeds both Whisper's
chunks (``diarkit.vad``) and diarization (binarization, speaker count per frame and the
embedding masks): a music frame is neither a turn, nor a chunk, nor part of an embedding.
Each model still runs once per file.

The silero model is a packaged asset of the pinned faster-whisper, loaded by path, not a
model-directory artifact: it is a 2 MB file that every install already has, and existing
model directories keep working unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from diarkit.compat.faster_whisper import SILERO_VAD_PATH, SILERO_WINDOW, SileroVADModel, silero_probabilities
from diarkit.compat.pyannote import SlidingWindowFeature

from diarkit.audio import SAMPLE_RATE
from diarkit.models.segmentation import Segmentation

logger = logging.getLogger(__name__)

#: seconds per silero frame
SILERO_STEP = SILERO_WINDOW / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechGateOptions:
    """The fused speech decision (chosen in eval/RESULTS.md, issue 20).

    Two tiers, OR-ed:

    * strict: silero hysteresis (``onset``/``offset``) with ``pad`` and ``min_gap``, confident speech;
    * weak support: far-field meeting speech (AMI) often gets silero probabilities of 0.05-0.3,
      which the strict tier drops (it kept only ~90% of the AMI speech that the segmentation
      finds, DER +3.7 points), while music and effects stay near 0. A frame is also kept when
      silero reaches ``support`` somewhere within ``support_window`` seconds around it AND the
      frame lies in a contiguous region of segmentation speech (aggregated probability >= 0.5)
      in which at least ``region_support`` of the frames reach ``support``. The window keeps
      low-probability speech next to weak evidence; the region condition drops segmentation
      activity (music) that silero leaves near zero for most of its length.

    ``support=None`` (the default) turns the weak tier off (strict gate only): with 0.05 it keeps
    AMI within +0.25 DER of no gate but fails the 20 s music-alone test (one speaker) and
    the bed/effects targets (eval/RESULTS.md), so it is opt-in for meeting audio.
    """

    onset: float = 0.5  # a speech region starts when the probability reaches this
    offset: float = 0.35  # and ends when it falls under this
    pad: float = 0.2  # seconds kept on each side of a speech region
    min_gap: float = 0.3  # non-speech shorter than this between two regions is kept as speech
    support: float | None = None  # silero probability that counts as weak evidence (measured: 0.05); None = strict only (default, see RESULTS)
    support_window: float = 1.0  # seconds (total width) around a frame searched for weak evidence
    region_support: float = 0.3  # share of a segmentation speech region's frames that must show weak evidence


def hysteresis(probs: np.ndarray, onset: float, offset: float) -> np.ndarray:
    """Boolean speech per frame: on at ``onset``, off under ``offset``."""
    active = np.zeros(len(probs), dtype=bool)
    on = False
    for i, p in enumerate(probs):
        on = p >= offset if on else p >= onset
        active[i] = on
    return active


def speech_mask(probs: np.ndarray, options: SpeechGateOptions) -> np.ndarray:
    """Silero frame probabilities -> boolean speech per frame, with padding and short gaps filled."""
    active = hysteresis(probs, options.onset, options.offset)
    pad = int(round(options.pad / SILERO_STEP))
    min_gap = int(round(options.min_gap / SILERO_STEP))
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    mask = np.zeros_like(active)
    previous_end = None
    for start, end in zip(starts, ends):
        start, end = max(0, start - pad), min(len(mask), end + pad)
        if previous_end is not None and start - previous_end < min_gap:
            start = previous_end
        mask[start:end] = True
        previous_end = end
    return mask


def support_mask(probs: np.ndarray, segmentation_speech: np.ndarray, options: SpeechGateOptions) -> np.ndarray:
    """The weak tier: silero >= ``support`` within the window AND enough support in the segmentation region.

    ``segmentation_speech`` is the segmentation's speech probability per silero frame.
    """
    n = len(probs)
    if options.support is None or n == 0:
        return np.zeros(n, dtype=bool)
    from scipy.ndimage import label, maximum_filter1d

    evidence = probs >= options.support
    width = max(1, int(round(options.support_window / SILERO_STEP)))
    near = maximum_filter1d(evidence.astype(np.int8), width).astype(bool)
    regions, count = label(np.asarray(segmentation_speech[:n]) >= 0.5)
    if count == 0:
        return np.zeros(n, dtype=bool)
    supported = np.bincount(regions, weights=evidence, minlength=count + 1)
    size = np.bincount(regions, minlength=count + 1)
    ok = supported / np.maximum(size, 1) >= options.region_support
    ok[0] = False  # frames outside every region
    return near & ok[regions]


def fused_mask(probs: np.ndarray, segmentation_speech: np.ndarray | None, options: SpeechGateOptions) -> np.ndarray:
    """Strict silero speech OR weak silero support inside segmentation speech (see SpeechGateOptions)."""
    mask = speech_mask(probs, options)
    if segmentation_speech is not None and options.support is not None:
        mask |= support_mask(probs, segmentation_speech, options)
    return mask


def segmentation_speech_per_frame(segmentation: Segmentation, num_frames: int) -> np.ndarray:
    """The (ungated) segmentation's aggregated speech probability at each silero frame's centre."""
    from diarkit.vad import speech_probability

    scores = speech_probability(segmentation)
    window = scores.sliding_window
    data = np.nan_to_num(np.asarray(scores.data)[:, 0])
    if num_frames == 0 or len(data) == 0:
        return np.zeros(num_frames, dtype=np.float32)
    t = (np.arange(num_frames) + 0.5) * SILERO_STEP
    index = np.floor((t - window.start - window.duration / 2) / window.step + 0.5).astype(int)
    return data[np.clip(index, 0, len(data) - 1)]


class SileroSpeech:
    """Silero VAD v6 speech probability per 32 ms frame of 16 kHz audio."""

    name = "silero-vad-v6"

    def __init__(self, path: str = SILERO_VAD_PATH):
        self.model = SileroVADModel(path)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if audio.size == 0:
            return np.zeros(0, dtype=np.float32)
        padded = np.pad(np.asarray(audio, dtype=np.float32), (0, -len(audio) % SILERO_WINDOW))
        return silero_probabilities(self.model, padded)


def gate_segmentation(segmentation: Segmentation, mask: np.ndarray) -> Segmentation:
    """The segmentation (and a powerset model's speech probability) with every output frame whose centre falls in non-speech set to 0."""
    chunks = segmentation.chunks
    num_chunks, num_frames, _ = chunks.data.shape
    starts = np.array([chunks.sliding_window[c].start for c in range(num_chunks)])
    middles = np.array([segmentation.frames[f].middle for f in range(num_frames)])
    index = np.floor((starts[:, None] + middles[None, :]) / SILERO_STEP).astype(int)
    keep = mask[np.clip(index, 0, len(mask) - 1)] if len(mask) else np.zeros(index.shape, dtype=bool)
    data = chunks.data * keep[:, :, None].astype(chunks.data.dtype)
    gated = replace(segmentation, chunks=SlidingWindowFeature(data, chunks.sliding_window))
    if segmentation.speech is not None:  # a powerset model's own speech probability feeds the VAD
        speech = segmentation.speech
        gated.speech = SlidingWindowFeature(speech.data * keep[:, :, None].astype(speech.data.dtype),
                                            speech.sliding_window)
    return gated


class SpeechGate:
    """Runs silero once per file and gates the shared segmentation with the fused decision (the segmentation is not rerun)."""

    def __init__(self, options: SpeechGateOptions | None = None, detector: SileroSpeech | None = None):
        self.options = options or SpeechGateOptions()
        self.detector = detector or SileroSpeech()

    def __call__(self, audio: np.ndarray, segmentation: Segmentation) -> Segmentation:
        probs = self.detector(audio)
        seg_speech = segmentation_speech_per_frame(segmentation, len(probs)) if self.options.support is not None else None
        mask = fused_mask(probs, seg_speech, self.options)
        logger.debug("speech gate: %.1f of %.1f s kept", mask.sum() * SILERO_STEP, len(mask) * SILERO_STEP)
        return gate_segmentation(segmentation, mask)
