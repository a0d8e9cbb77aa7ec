"""Speaker diarization: pyannote.audio's pipeline on local models.

pyannote's ``SpeakerDiarization`` builds its embedding model from a hub name in
``__init__``; here its parts are passed in instead (the segmentation model already
loaded for VAD, a packaged speaker encoder, agglomerative clustering), and the
segmentation computed once per file is reused rather than recomputed. The clustering
checks its speaker count on long stretches of audio (``diarkit.diarization.clustering``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from diarkit.compat.pyannote import (Annotation, Audio, Clustering, Inference, ParamDict, Pipeline,
                                     SlidingWindowFeature, SpeakerDiarization, Uniform, binarize)

from diarkit.audio import SAMPLE_RATE
from diarkit.diarization.clustering import SplitCheckedClustering
from diarkit.errors import OptionsError
from diarkit.models.embedding import MelSpeakerEncoder, SpeakerCheck
from diarkit.result import SpeakerTurn
from diarkit.models.segmentation import Segmentation, Segmenter

logger = logging.getLogger(__name__)


@dataclass
class DiarizationOptions:
    """Hyper-parameters; the defaults were chosen on the tuning files of eval/RESULTS.md."""

    segmentation_threshold: float = 0.45
    min_duration_off: float = 0.0
    clustering: str = "AgglomerativeClustering"
    clustering_method: str = "centroid"
    clustering_threshold: float = 0.5
    min_cluster_size: int = 12
    # split a speaker in two when the pooled embeddings of its halves are below this cosine
    # similarity (diarkit.diarization.clustering); None keeps pyannote's clustering as it is
    speaker_split_threshold: float | None = 0.75
    min_split_seconds: float = 2.0
    # a pooled embedding (split and merge checks) reads at most this much of a speaker's
    # single-speaker speech, in ten pieces spread over the file: a voice is steady well before
    # that, and each speaker is pooled again at every check (cost grows with the cast)
    max_pooled_seconds: float = 30.0
    # then a speaker with under small_speaker_seconds and under small_speaker_share of the
    # single-speaker speech joins its closest speaker at this pooled cosine (None: never)
    small_speaker_merge_threshold: float | None = 0.78
    small_speaker_seconds: float = 8.0
    small_speaker_share: float = 0.1
    # which encoder the two checks pool with: "auto" = the model directory's speaker-check
    # artifact when it has one, at the cosines its manifest entry was calibrated at (the two
    # thresholds above are resemblyzer's), else the embedding encoder; "embedding" = always
    # the embedding encoder at the thresholds above. None above still turns a check off.
    speaker_check: str = "auto"
    speaker_check_split_threshold: float | None = None  # None: the speaker-check artifact's
    speaker_check_merge_threshold: float | None = None  # None: the speaker-check artifact's
    embedding_exclude_overlap: bool = True
    embedding_batch_size: int = 32

    def speaker_checks(self, encoder: MelSpeakerEncoder, check: SpeakerCheck | None):
        """(encoder, split threshold, merge threshold or None) the two checks run with."""
        if check is None:
            return encoder, self.speaker_split_threshold, self.small_speaker_merge_threshold
        split = self.speaker_check_split_threshold
        merge = self.speaker_check_merge_threshold
        return (check.encoder, check.split_threshold if split is None else split,
                None if self.small_speaker_merge_threshold is None else
                check.merge_threshold if merge is None else merge)

    def parameters(self) -> dict:
        return {
            "segmentation": {"threshold": self.segmentation_threshold,
                             "min_duration_off": self.min_duration_off},
            "clustering": {"method": self.clustering_method,
                           "threshold": self.clustering_threshold,
                           "min_cluster_size": self.min_cluster_size},
        }


class LocalSpeakerDiarization(SpeakerDiarization):
    """pyannote's SpeakerDiarization with injected parts and shared segmentation."""

    PRECOMPUTED = "diarkit/segmentation"
    UNGATED = "diarkit/ungated-segmentation"

    def __init__(self, segmenter: Segmenter, encoder: MelSpeakerEncoder, options: DiarizationOptions,
                 check: SpeakerCheck | None = None):
        Pipeline.__init__(self)  # SpeakerDiarization.__init__ would fetch models from the hub
        self.legacy = False
        self.segmentation_model = "local"
        self.segmentation_step = segmenter.step_ratio
        self.embedding = encoder.name
        self.embedding_batch_size = options.embedding_batch_size
        self.embedding_exclude_overlap = options.embedding_exclude_overlap
        self.plda = None
        self._plda = None
        self.klustering = options.clustering
        self.der_variant = {"collar": 0.0, "skip_overlap": False}
        self._segmentation = segmenter.inference
        self.segmentation = ParamDict(threshold=Uniform(0.1, 0.9), min_duration_off=Uniform(0.0, 1.0))
        self._embedding = encoder
        self._audio = Audio(sample_rate=encoder.sample_rate, mono="downmix")
        if options.clustering == "AgglomerativeClustering" and options.speaker_split_threshold is not None:
            check_encoder, split, merge = options.speaker_checks(encoder, check)
            self.clustering = SplitCheckedClustering(
                check_encoder, split_threshold=split,
                min_split_seconds=options.min_split_seconds, max_pooled_seconds=options.max_pooled_seconds,
                small_merge_threshold=merge,
                small_seconds=options.small_speaker_seconds, small_share=options.small_speaker_share,
                metric=encoder.metric)
        else:
            self.clustering = Clustering[options.clustering].value(metric=encoder.metric)
        self._expects_num_speakers = self.clustering.expects_num_clusters

    def reconstruct(self, segmentations: SlidingWindowFeature, hard_clusters: np.ndarray,
                    count: SlidingWindowFeature) -> SlidingWindowFeature:
        """pyannote's reconstruction, one cluster at a time.

        pyannote builds a float64 (chunks, frames, clusters) array before aggregating: 0.9 GB
        for an hour with 50 clusters. Aggregation is independent per cluster, so doing it
        per cluster in float32 gives the same activations with memory that does not grow
        with the number of speakers.
        """
        num_chunks, num_frames, _ = segmentations.data.shape
        num_clusters = int(np.max(hard_clusters)) + 1
        columns = []
        for k in range(num_clusters):
            per_chunk = np.full((num_chunks, num_frames, 1), np.nan, dtype=np.float32)
            for c, cluster in enumerate(hard_clusters):
                if np.any(cluster == k):
                    per_chunk[c, :, 0] = np.max(segmentations.data[c][:, cluster == k], axis=1)
            aggregated = Inference.aggregate(SlidingWindowFeature(per_chunk, segmentations.sliding_window),
                                             count.sliding_window, hamming=False, missing=0.0, skip_average=True)
            columns.append(aggregated.data[:, 0])
            window = aggregated.sliding_window
        activations = SlidingWindowFeature(np.stack(columns, axis=1), window)
        max_per_frame = int(np.max(count.data))
        if num_clusters < max_per_frame:
            activations.data = np.pad(activations.data, ((0, 0), (0, max_per_frame - num_clusters)))
        extent = activations.extent & count.extent
        activations = activations.crop(extent, return_data=False)
        count = count.crop(extent, return_data=False)
        # keep the ``count`` most active clusters in each frame (as pyannote's to_diarization)
        order = np.argsort(-activations.data, axis=-1)
        active = np.arange(activations.data.shape[1])[None, :] < count.data.reshape(-1, 1)
        binary = np.zeros_like(activations.data)
        np.put_along_axis(binary, order, active.astype(binary.dtype), axis=-1)
        return SlidingWindowFeature(binary, activations.sliding_window)

    def get_embeddings(self, file, binary_segmentations, exclude_overlap=False, hook=None):
        """pyannote's embeddings, read through the ungated segmentation's masks when the file has it.

        The gate decides which frames are turns; an embedding read through fewer frames (silero
        drops some noisy speech) lands elsewhere: speech under effects became its own speaker.
        Local speakers the gate silenced entirely stay inactive for clustering and get no turns.
        """
        ungated = file.get(self.UNGATED)
        if ungated is not None:
            if not self._segmentation.model.specifications.powerset:
                ungated = binarize(ungated, onset=self.segmentation.threshold, initial_state=False)
            binary_segmentations = ungated
        return super().get_embeddings(file, binary_segmentations, exclude_overlap=exclude_overlap, hook=hook)

    def get_segmentations(self, file, hook=None):
        if self.PRECOMPUTED in file:
            return file[self.PRECOMPUTED]
        return super().get_segmentations(file, hook=hook)


@dataclass
class Diarization:
    turns: list[SpeakerTurn]
    exclusive_turns: list[SpeakerTurn]
    speaker_embeddings: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    #: turns of speakers the speech gate rejected (no confident speech: music it let through)
    rejected_turns: list[SpeakerTurn] = field(default_factory=list)


def speaker_count_notes(found: int, *, num_speakers: int | None = None, min_speakers: int | None = None,
                        max_speakers: int | None = None) -> list[str]:
    """A note for the result when the speakers found are outside what the request asked for.

    pyannote says this through ``warnings.warn``; reading it back would need a process-wide
    ``catch_warnings`` (not thread-safe), so the same check is made here on the result.
    """
    low = num_speakers or min_speakers or 1
    high = num_speakers or max_speakers
    if found < low or (high is not None and found > high):
        bounds = f"[{low}, {high if high is not None else 'any'}]"
        return [f"The detected number of speakers ({found}) is outside the given bounds {bounds}. "
                f"This can happen if the audio is too short to contain {low} or more speakers."]
    return []


def _turns(annotation: Annotation) -> list[SpeakerTurn]:
    return [
        SpeakerTurn(round(seg.start, 3), round(seg.end, 3), str(label))
        for seg, _, label in annotation.itertracks(yield_label=True)
    ]


class Diarizer:
    """``check``: the speaker-check encoder and its thresholds (used when the options say "auto")."""

    def __init__(self, segmenter: Segmenter, encoder: MelSpeakerEncoder,
                 options: DiarizationOptions | None = None, *, check: SpeakerCheck | None = None):
        self.options = options or DiarizationOptions()
        if self.options.speaker_check not in ("auto", "embedding"):
            raise OptionsError(f"unknown speaker_check {self.options.speaker_check!r}",
                               hint="use auto (the model directory's speaker-check encoder) or embedding")
        self.encoder = encoder
        self.check = check if self.options.speaker_check == "auto" else None
        self.pipeline = LocalSpeakerDiarization(segmenter, encoder, self.options, self.check)
        self.pipeline.instantiate(self.options.parameters())

    def __call__(self, audio: np.ndarray, segmentation: Segmentation, *, uri: str = "audio",
                 num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None) -> Diarization:
        file = {
            "waveform": torch.from_numpy(audio).unsqueeze(0),
            "sample_rate": SAMPLE_RATE,
            "uri": uri,
            LocalSpeakerDiarization.PRECOMPUTED: segmentation.chunks,
        }
        if segmentation.ungated is not None:
            file[LocalSpeakerDiarization.UNGATED] = segmentation.ungated
        step = int(round(segmentation.chunks.sliding_window.step * SAMPLE_RATE))
        # the mel encoders reuse one spectrogram per file; other encoders (WeSpeaker) embed per chunk
        file_features = getattr(self.encoder, "file_features", None)
        with torch.inference_mode(), (file_features(audio, step) if file_features else contextlib.nullcontext()):
            output = self.pipeline(file, num_speakers=num_speakers, min_speakers=min_speakers,
                                   max_speakers=max_speakers)
        found = len(output.speaker_diarization.labels())
        notes = speaker_count_notes(found, num_speakers=num_speakers, min_speakers=min_speakers,
                                    max_speakers=max_speakers)
        for note in notes:
            logger.warning("%s: %s", uri, note)
        return Diarization(
            turns=_turns(output.speaker_diarization),
            exclusive_turns=_turns(output.exclusive_speaker_diarization),
            speaker_embeddings=output.speaker_embeddings,
            warnings=notes,
        )
