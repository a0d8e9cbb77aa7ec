"""pyannote.audio / core / pipeline: the parts of SpeakerDiarization diarkit builds on (4.0.x).

diarkit subclasses ``SpeakerDiarization`` to hand it models already loaded and the
segmentation computed once per file; the private attributes it sets or reads are listed in
``SPEAKER_DIARIZATION_ATTRIBUTES`` and checked by the tests.
"""

from __future__ import annotations

import warnings

import fastcluster
import numpy as np
import pyannote.audio.pipelines.clustering as _pyannote_clustering
import pyannote.audio.pipelines.speaker_diarization as _pyannote_speaker_diarization
from scipy.cluster.hierarchy import linkage as _scipy_linkage
from pyannote.audio import Audio, Inference, Model, Pipeline
from pyannote.audio.core.plda import PLDA
from pyannote.audio.utils.powerset import Powerset
from pyannote.audio.utils.signal import binarize as _pyannote_binarize
from pyannote.audio.pipelines.clustering import AgglomerativeClustering, Clustering
from pyannote.audio.pipelines.speaker_diarization import SpeakerDiarization
from pyannote.core import Annotation, Segment, SlidingWindow, SlidingWindowFeature
from pyannote.pipeline.parameter import ParamDict, Uniform

__all__ = ["AgglomerativeClustering", "Annotation", "Audio", "binarize", "Clustering", "Inference", "Model", "PLDA",
           "ParamDict", "Pipeline", "Powerset", "Segment", "SlidingWindow", "SlidingWindowFeature", "SpeakerDiarization", "Uniform",
           "POWERSET_SPECIFICATION_ATTRIBUTES", "SPEAKER_DIARIZATION_ATTRIBUTES", "bounded_binarize", "bounded_linkage"]

#: what diarkit reads on a powerset model's specifications (segmentation-3.0)
POWERSET_SPECIFICATION_ATTRIBUTES = ("powerset", "classes", "powerset_max_classes", "duration")

#: methods of SpeakerDiarization that diarkit overrides or relies on
SPEAKER_DIARIZATION_ATTRIBUTES = ("get_segmentations", "reconstruct", "apply", "instantiate",
                                  "get_embeddings")

# diarkit reports an out-of-bounds speaker count in the result itself
# (diarkit.diarization.diarizer.speaker_count_notes); pyannote's own warning is a duplicate
warnings.filterwarnings("ignore", message=r"\s*The detected number of speakers", category=UserWarning)


#: from this many observations on, linkage runs on the vectors (the condensed distance matrix
#: of 4 096 would be 64 MiB of float64; of the 7 500 chunk embeddings of an hour, 217 MiB,
#: and scipy's peak was 2.4 times that)
VECTOR_LINKAGE_FROM = 4096
_VECTOR_METHODS = ("single", "centroid", "median", "ward")


def bounded_linkage(y, method: str = "single", metric: str = "euclidean", optimal_ordering: bool = False,
                    *, vector_from: int = VECTOR_LINKAGE_FROM):
    """scipy's ``linkage``, or fastcluster's ``linkage_vector`` on many observations.

    scipy first builds the condensed distance matrix, n^2/2 float64: on an hour of speech the
    diarization stage's peak memory was this matrix (+470 MiB). ``linkage_vector`` computes
    distances as it merges (memory linear in n) and gives the same dendrogram for these
    methods with the euclidean metric (same merges, distances equal to 1e-15 on the
    benchmark's hour); it is about 2.5 times slower, so it takes over only on large inputs.
    pyannote's agglomerative and VBx clusterings call ``linkage`` by its module name, which
    is pointed here below.
    """
    y = np.asarray(y)
    if (y.ndim == 2 and y.shape[0] >= vector_from and metric == "euclidean" and method in _VECTOR_METHODS
            and not optimal_ordering):
        return fastcluster.linkage_vector(np.ascontiguousarray(y, dtype=np.float64), method=method,
                                          metric="euclidean")
    return _scipy_linkage(y, method=method, metric=metric, optimal_ordering=optimal_ordering)


_pyannote_clustering.linkage = bounded_linkage


#: chunks binarized at a time by ``bounded_binarize``
BINARIZE_BLOCK_CHUNKS = 512


def _hysteresis_rows(scores: np.ndarray, onset: float, offset: float, initial: np.ndarray) -> np.ndarray:
    """pyannote's ``binarize_ndarray`` on (rows, frames): each frame takes the state of the
    last frame at or before it that is above ``onset`` (on) or below ``offset`` (off), else
    ``initial``."""
    scores = np.nan_to_num(scores)
    on = scores > onset
    defined = (scores < offset) | on
    frames = np.arange(scores.shape[1], dtype=np.int32)
    last = np.maximum.accumulate(np.where(defined, frames, np.int32(-1)), axis=1)
    state = np.take_along_axis(on, np.maximum(last, 0), axis=1)
    return np.where(last >= 0, state, initial[:, None])


def bounded_binarize(scores, onset: float = 0.5, offset: float | None = None, initial_state=None):
    """pyannote's ``binarize``, with chunked segmentations binarized a block of chunks at a time.

    pyannote's version gathers the index of every well-defined frame of every (chunk, local
    speaker) row through Python tuples, then several int64 arrays of the whole segmentation:
    on the hour's 7 200 chunks the diarization stage peaked +500 MiB in it. The same states
    come out (tests/test_compat.py), with the output (float64, as pyannote's) the only
    whole-size array. Other inputs go to pyannote's. pyannote's diarization pipeline calls
    ``binarize`` by its module name, which is pointed here below.
    """
    if not (isinstance(scores, SlidingWindowFeature) and scores.data.ndim == 3):
        return _pyannote_binarize(scores, onset=onset, offset=offset, initial_state=initial_state)
    offset = offset or onset  # as pyannote: offset=0.0 means onset
    data = scores.data
    num_chunks, num_frames, num_classes = data.shape
    if isinstance(initial_state, np.ndarray):
        if initial_state.shape != (num_chunks * num_classes,) or initial_state.dtype != bool:
            raise ValueError("initial_state must be a bool array of num_chunks * num_classes rows")
    binarized = np.empty(data.shape, dtype=np.float64)
    for a in range(0, num_chunks, BINARIZE_BLOCK_CHUNKS):
        b = min(num_chunks, a + BINARIZE_BLOCK_CHUNKS)
        rows = np.ascontiguousarray(data[a:b].transpose(0, 2, 1)).reshape(-1, num_frames)  # (c k) f
        if initial_state is None:
            initial = np.nan_to_num(rows[:, 0]) >= 0.5 * (onset + offset)
        elif isinstance(initial_state, np.ndarray):
            initial = initial_state[a * num_classes:b * num_classes]
        else:
            initial = np.full(rows.shape[0], bool(initial_state))
        states = _hysteresis_rows(rows, onset, offset, initial)
        binarized[a:b] = states.reshape(b - a, num_classes, num_frames).transpose(0, 2, 1)
    return SlidingWindowFeature(binarized, scores.sliding_window)


binarize = bounded_binarize
_pyannote_speaker_diarization.binarize = bounded_binarize
