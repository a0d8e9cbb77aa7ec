"""Speaker diarization as a pyannote pipeline config.yaml describes it (3.1, community-1).

pyannote builds the pipeline from the local config with the config's own class and
hyper-parameters (``Pipeline.from_pretrained`` on the config's content); diarkit changes
only what it must: the segmentation, embedding and PLDA models are the ones the model
directory's roles already loaded (each loaded once, no hub ids), and the segmentation
computed once per file for VAD is handed to the pipeline instead of being recomputed.
pyannote's own clustering runs as configured: diarkit's resemblyzer-tuned split and merge
checks (``diarization.clustering``) are not applied to pyannote embeddings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from diarkit.compat.pyannote import PLDA, Pipeline, SpeakerDiarization
from diarkit.diarization.diarizer import Diarizer, DiarizationOptions, LocalSpeakerDiarization
from diarkit.errors import ModelDirectoryError

logger = logging.getLogger(__name__)

#: the pipeline params that name models; the model directory's roles provide them
MODEL_PARAMS = ("segmentation", "embedding", "plda")


class _UnusedPLDA(PLDA):
    """Stands for the PLDA a config without one does not use (agglomerative clustering).

    pyannote 4 always loads a PLDA in ``SpeakerDiarization.__init__`` and defaults to the
    gated community-1 repo (a download); a 3.1 config has no PLDA and never calls it.
    """

    def __init__(self):  # noqa: D107 - no files
        pass

    def __call__(self, embeddings):
        raise RuntimeError("this pipeline config has no PLDA; VBx clustering needs a plda artifact")


class ConfiguredSpeakerDiarization(SpeakerDiarization):
    """pyannote's SpeakerDiarization, reading a segmentation computed beforehand when given."""

    PRECOMPUTED = LocalSpeakerDiarization.PRECOMPUTED

    def get_segmentations(self, file, hook=None):
        if self.PRECOMPUTED in file:
            return file[self.PRECOMPUTED]
        return super().get_segmentations(file, hook=hook)


CLASS_NAME = f"{ConfiguredSpeakerDiarization.__module__}.{ConfiguredSpeakerDiarization.__qualname__}"
SUPPORTED = ("pyannote.audio.pipelines.SpeakerDiarization",
             "pyannote.audio.pipelines.speaker_diarization.SpeakerDiarization")


@dataclass
class PipelineConfig:
    """A pyannote speaker-diarization config.yaml, read and checked; ``diarizer`` builds it."""

    path: Path
    config: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        return self.config["pipeline"].get("params", {})

    @property
    def segmentation_step(self) -> float:
        """Chunk step as a fraction of the segmentation chunk (pyannote's default 0.1)."""
        return float(self.params.get("segmentation_step", 0.1))

    @property
    def clustering(self) -> str:
        return self.params.get("clustering", "VBxClustering")

    def diarizer(self, segmenter, embedding, plda=None, *, device: str = "cpu") -> "ConfiguredDiarizer":
        """The pipeline with the loaded ``segmenter`` (its model), ``embedding`` model and ``plda``."""
        if plda is None:
            if self.clustering == "VBxClustering":
                raise ModelDirectoryError(f"{self.path.name} uses VBx clustering, which needs a PLDA, and the "
                                          "manifest has no plda artifact", path=str(self.path),
                                          hint="fetch the profile again (its plda/ folder is part of it)")
            plda = _UnusedPLDA()
        step = self.segmentation_step
        if abs(step - segmenter.step_ratio) > 1e-9:
            raise ModelDirectoryError(f"{self.path.name} asks for segmentation_step {step}, the shared "
                                      f"segmentation uses {segmenter.step_ratio}", path=str(self.path))
        config = {**self.config, "pipeline": {**self.config["pipeline"], "name": CLASS_NAME,
                                              "params": {**self.params, "segmentation": segmenter.model,
                                                         "embedding": embedding, "plda": plda}}}
        config.pop("device", None)
        pipeline = Pipeline.from_pretrained(config)
        pipeline.to(_torch_device(device))
        logger.info("diarization pipeline from %s (%s clustering)", self.path, self.clustering)
        return ConfiguredDiarizer(pipeline)


def _torch_device(device: str):
    import torch

    return torch.device(device)


class ConfiguredDiarizer(Diarizer):
    """``Diarizer``'s call (turns, notes) on a pipeline built from a config."""

    def __init__(self, pipeline: ConfiguredSpeakerDiarization):
        self.options = DiarizationOptions(speaker_split_threshold=None, small_speaker_merge_threshold=None)
        self.pipeline = pipeline
        self.encoder = None  # pyannote's own embedding model, inside the pipeline


def read_pipeline_config(path: Path) -> PipelineConfig:
    """config.yaml -> PipelineConfig; a file it names that is not in the model directory is an error.

    ``$model/<sub>`` references resolve against the config's folder (pyannote's own rule),
    so the directory loads wherever it is mounted. Nothing is downloaded: a hub id left in
    the config is an error that says to fetch the profile again.
    """
    config_file = path / "config.yaml" if path.is_dir() else path
    try:
        config = yaml.safe_load(config_file.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelDirectoryError(f"unreadable pipeline config ({exc})", path=str(config_file)) from exc
    pipeline = (config or {}).get("pipeline") if isinstance(config, dict) else None
    if not isinstance(pipeline, dict) or not isinstance(pipeline.get("params", {}), dict):
        raise ModelDirectoryError("pipeline config has no pipeline section", path=str(config_file))
    if pipeline.get("name") not in SUPPORTED:
        raise ModelDirectoryError(f"pipeline {pipeline.get('name')!r} is not a speaker diarization pipeline",
                                  path=str(config_file), hint=f"diarkit reads {SUPPORTED[0]} configs")
    for key in MODEL_PARAMS:
        value = pipeline.get("params", {}).get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.startswith("$model/"):
            raise ModelDirectoryError(
                f"pipeline.params.{key} is {value!r}, not a file of the model directory ($model/...)",
                path=str(config_file), hint="fetch the profile with scripts/fetch_models.py, which rewrites it")
        target = config_file.parent / value.removeprefix("$model/")
        if not target.exists():
            raise ModelDirectoryError(f"pipeline.params.{key} points at {value}, which is missing",
                                      path=str(config_file), hint="re-run scripts/fetch_models.py")
    return PipelineConfig(config_file, config)


def load_pipeline_config(path: Path, artifact, context) -> PipelineConfig:
    """Registry loader for a pyannote pipeline config (the models come from their own roles)."""
    return read_pipeline_config(path)
