"""The diarkit pipeline: media in, one TranscriptResult out.

decode -> segmentation (shared) -> VAD -> transcription -> word timestamps ->
diarization -> speaker assignment. The CLI, the HTTP server, the SageMaker handlers
and the evaluation tools all call ``DiarkitPipeline.transcribe``; none of them holds
pipeline logic of its own.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .modeldir import force_offline

force_offline()  # before any hub client is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import audio as audio_io  # noqa: E402
from .align import Wav2Vec2Aligner, WhisperAligner  # noqa: E402
from .assign import assign_word_speakers, build_segments, speaker_summary  # noqa: E402
from .diarize import DiarizationOptions, Diarizer  # noqa: E402
from .embedding import load_encoder  # noqa: E402
from .errors import OptionsError  # noqa: E402
from .modeldir import ModelDirectory  # noqa: E402
from .result import TranscriptResult  # noqa: E402
from .segmentation import Segmenter  # noqa: E402
from .vad import speech_chunks  # noqa: E402

logger = logging.getLogger(__name__)

#: progress(stage, completed, total): called as each stage advances.
ProgressCallback = Callable[[str, int, int], None]
STAGES = ("decode", "vad", "transcribe", "align", "diarize", "assign")


@dataclass
class SpeakerHints:
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self):
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise OptionsError(f"{name} must be a whole number, not {value!r}") from None
            if not 1 <= value <= 50:
                raise OptionsError(f"{name} must be between 1 and 50, not {value}")
            setattr(self, name, value)
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise OptionsError(f"min_speakers ({self.min_speakers}) is larger than max_speakers ({self.max_speakers})")


def pick_device(device: str = "auto") -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise OptionsError(f"unknown device {device!r}", hint="use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionsError("device cuda was asked for, but no CUDA GPU is available", hint="use --device cpu")
    return device


@dataclass
class PipelineOptions:
    """Settings that are not per request. Defaults are the measured choices."""

    batch_size: int = 8
    beam_size: int = 5
    vad_onset: float = 0.5
    vad_offset: float = 0.363
    chunk_size: float = 30.0
    diarization: DiarizationOptions = field(default_factory=DiarizationOptions)


class DiarkitPipeline:
    def __init__(self, model_dir: ModelDirectory, device: str = "auto",
                 options: PipelineOptions | None = None):
        self.model_dir = model_dir
        self.device = pick_device(device)
        self.options = options or PipelineOptions()
        started = time.perf_counter()
        torch_device = torch.device(self.device)
        if self.device == "cpu":
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        asr = model_dir.artifact("asr")
        from .transcribe import Transcriber  # whisperx import is the slow part

        self.segmenter = Segmenter(model_dir.path("segmentation"), torch_device)
        self.transcriber = Transcriber(
            model_dir.path("asr"), device=self.device.split(":")[0],
            compute_type="float16" if self.device.startswith("cuda") else "int8",
            language=asr.settings.get("language"), batch_size=self.options.batch_size,
            beam_size=self.options.beam_size,
        )
        embedding = model_dir.artifact("embedding")
        self.encoder = load_encoder(embedding.kind, model_dir.path("embedding"), torch_device)
        self.diarizer = Diarizer(self.segmenter, self.encoder, self.options.diarization)
        alignment = model_dir.artifact("alignment")
        if alignment is not None:
            self.aligner = Wav2Vec2Aligner(model_dir.path("alignment"),
                                           language=alignment.settings.get("language", "en"),
                                           device=self.device)
        else:
            self.aligner = WhisperAligner(self.transcriber, batch_size=self.options.batch_size)
        self.load_seconds = time.perf_counter() - started
        logger.info("models loaded from %s on %s in %.1f s", model_dir.root, self.device, self.load_seconds)

    @classmethod
    def from_model_dir(cls, path: str | os.PathLike = "model", device: str = "auto",
                       options: PipelineOptions | None = None) -> "DiarkitPipeline":
        return cls(ModelDirectory(path), device=device, options=options)

    def describe_models(self) -> dict:
        models = self.model_dir.describe()
        models["alignment"] = {"kind": self.aligner.name}
        models["device"] = self.device
        return models

    def transcribe(self, media: str | os.PathLike | np.ndarray, *, uri: str | None = None,
                   num_speakers: int | None = None, min_speakers: int | None = None,
                   max_speakers: int | None = None, language: str | None = None,
                   progress: ProgressCallback | None = None) -> TranscriptResult:
        hints = SpeakerHints(num_speakers, min_speakers, max_speakers)
        timings: dict[str, float] = {}
        report = progress or (lambda stage, done, total: None)

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            report(name, 0, 1)
            started = time.perf_counter()
            yield
            timings[name] = time.perf_counter() - started
            report(name, 1, 1)

        with stage("decode"):
            if isinstance(media, np.ndarray):
                samples = np.ascontiguousarray(media, dtype=np.float32)
                uri = uri or "audio"
            else:
                samples = audio_io.decode(media)
                uri = uri or Path(media).stem
        duration = samples.shape[0] / audio_io.SAMPLE_RATE

        with stage("vad"):
            segmentation = self.segmenter(samples)
            chunks = speech_chunks(segmentation, onset=self.options.vad_onset, offset=self.options.vad_offset,
                                   chunk_size=self.options.chunk_size)
            chunks = [c for c in chunks if min(c.end, duration) - c.start > 0.05]
        with stage("transcribe"):
            language = self.transcriber.resolve_language(samples, chunks, language)
            texts = self.transcriber(samples, chunks, language,
                                     progress=lambda done, total: report("transcribe", done, total + 1))
        with stage("align"):
            words_per_chunk = self.aligner(samples, texts, language) if texts else []
        with stage("diarize"):
            diarization = self.diarizer(samples, segmentation, uri=uri, **asdict(hints))
        with stage("assign"):
            words = [w for chunk_words in words_per_chunk for w in chunk_words]
            assign_word_speakers(words, diarization.turns)
            segments = build_segments(words)
            speakers = speaker_summary(diarization.turns, words)

        return TranscriptResult(
            uri=uri, duration=duration, language=language, segments=segments,
            turns=diarization.turns, speakers=speakers, models=self.describe_models(),
            timings=timings, options={k: v for k, v in asdict(hints).items() if v is not None},
            warnings=diarization.warnings,
        )
