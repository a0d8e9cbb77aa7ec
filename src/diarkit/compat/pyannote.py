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
from scipy.cluster.hierarchy import linkage as _scipy_linkage
from pyannote.audio import Audio, Inference, Model, Pipeline
from pyannote.audio.core.plda import PLDA
from pyannote.audio.utils.powerset import Powerset
from pyannote.audio.utils.signal import binarize
from pyannote.audio.pipelines.clustering import AgglomerativeClustering, Clustering
from pyannote.audio.pipelines.speaker_diarization import SpeakerDiarization
from pyannote.core import Annotation, Segment, SlidingWindow, SlidingWindowFeature
from pyannote.pipeline.parameter import ParamDict, Uniform

__all__ = ["AgglomerativeClustering", "Annotation", "Audio", "binarize", "Clustering", "Inference", "Model", "PLDA",
           "ParamDict", "Pipeline", "Powerset", "Segment", "SlidingWindow", "SlidingWindowFeature", "SpeakerDiarization", "Uniform",
           "POWERSET_SPECIFICATION_ATTRIBUTES", "SPEAKER_DIARIZATION_ATTRIBUTES", "bounded_linkage"]

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
