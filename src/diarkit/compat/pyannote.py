"""pyannote.audio / core / pipeline: the parts of SpeakerDiarization diarkit builds on (4.0.x).

diarkit subclasses ``SpeakerDiarization`` to hand it models already loaded and the
segmentation computed once per file; the private attributes it sets or reads are listed in
``SPEAKER_DIARIZATION_ATTRIBUTES`` and checked by the tests.
"""

from __future__ import annotations

import warnings

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
           "POWERSET_SPECIFICATION_ATTRIBUTES", "SPEAKER_DIARIZATION_ATTRIBUTES"]

#: what diarkit reads on a powerset model's specifications (segmentation-3.0)
POWERSET_SPECIFICATION_ATTRIBUTES = ("powerset", "classes", "powerset_max_classes", "duration")

#: methods of SpeakerDiarization that diarkit overrides or relies on
SPEAKER_DIARIZATION_ATTRIBUTES = ("get_segmentations", "reconstruct", "apply", "instantiate",
                                  "get_embeddings")

# diarkit reports an out-of-bounds speaker count in the result itself
# (diarkit.diarization.diarizer.speaker_count_notes); pyannote's own warning is a duplicate
warnings.filterwarnings("ignore", message=r"\s*The detected number of speakers", category=UserWarning)
