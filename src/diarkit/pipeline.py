"""The diarkit pipeline: media in, one TranscriptResult out.

decode -> segmentation (shared) -> VAD -> transcription -> word timestamps ->
diarization -> speaker assignment. The CLI, the HTTP server, the SageMaker handlers
and the evaluation tools all call ``DiarkitPipeline.transcribe``; none of them holds
pipeline logic of its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from diarkit.models.manifest import force_offline

force_offline()  # before any hub client is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402

from diarkit import audio as audio_io  # noqa: E402
from diarkit.models.alignment import WhisperAligner  # noqa: E402
from diarkit.assign import assign_word_speakers, build_segments, speaker_summary  # noqa: E402
from diarkit.diarization.diarizer import DiarizationOptions, Diarizer  # noqa: E402
from diarkit.errors import OptionsError  # noqa: E402
from diarkit.memory import release_free_memory  # noqa: E402
from diarkit.models.manifest import ModelDirectory  # noqa: E402
from diarkit.models.registry import LoadContext  # noqa: E402
from diarkit.request import RequestOptions  # noqa: E402
from diarkit.result import TranscriptResult  # noqa: E402
from diarkit.speech import SpeechGate, SpeechGateOptions, drop_unsupported_words, gate_segmentation  # noqa: E402
from diarkit.subtitles import build_events, get_rules  # noqa: E402
from diarkit.timecode import FrameRate  # noqa: E402
from diarkit.vad import speech_chunks  # noqa: E402
from diarkit.voices.naming import VoiceNamer  # noqa: E402

logger = logging.getLogger(__name__)

#: progress(stage, completed, total): called as each stage advances.
ProgressCallback = Callable[[str, int, int], None]
STAGES = ("decode", "vad", "transcribe", "align", "diarize", "assign")
_LOAD_LOCK = threading.Lock()


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

    # Whisper chunks per batch on the CPU: each chunk of a batch holds its beams' decoder
    # state (about 80 MB per chunk for tiny.en, beam 5); 4 keeps transcription's and alignment's
    # working set near 0.4 GB instead of 0.63 GB at the same speed on 2 cores (eval/BENCHMARK.md)
    batch_size: int = 4
    gpu_batch_size: int = 16  # Whisper chunks per batch on a GPU (whisperX's default there)
    beam_size: int = 5
    vad_onset: float = 0.5
    vad_offset: float = 0.363
    chunk_size: float = 30.0
    #: seconds between the shared segmentation's chunks (diarkit.models.segmentation); a
    #: production profile's pyannote config sets its own step instead
    segmentation_step: float = 0.5
    # diarize in a second thread while transcribing and aligning: both stages leave a core
    # idle much of the time (torch and CTranslate2 release the GIL); same results, but both
    # stages' working memory at once: off until measured against the memory bounds
    overlap_diarization: bool = False
    diarization: DiarizationOptions = field(default_factory=DiarizationOptions)
    #: words take their speaker from the "exclusive" diarization (one speaker at a time) or
    #: from the "overlap" turns; cpWER before/after in eval/RESULTS.md
    #: (overlap is the default: on the voice-library test episode, 5 speakers, the exclusive turns
    #: gave the enrolled voices' words to other speakers; on the sample exclusive won by one word)
    word_speakers: str = "overlap"
    # silero speech decision applied to the shared segmentation (music is not speech); None = off
    speech_gate: SpeechGateOptions | None = field(default_factory=SpeechGateOptions)


class DiarkitPipeline:
    """Every model of a model directory, loaded once; ``transcribe`` per file.

    Not shared between threads: a server runs one pipeline per inference worker.
    """

    def __init__(self, model_dir: ModelDirectory, device: str = "auto",
                 options: PipelineOptions | None = None, *, cpu_threads: int | None = None):
        self.model_dir = model_dir
        model_dir.check_files()  # a missing file fails now, before any model loads
        self.device = pick_device(device)
        self.options = options or PipelineOptions()
        threads = max(1, cpu_threads or os.cpu_count() or 1)
        batch_size = self.options.gpu_batch_size if self.device.startswith("cuda") else self.options.batch_size
        context = LoadContext(device=self.device, cpu_threads=threads, batch_size=batch_size,
                              beam_size=self.options.beam_size, segmentation_step=self.options.segmentation_step)
        with _LOAD_LOCK:  # several server workers load one after the other (memory peaks, globals)
            started = time.perf_counter()
            if self.device == "cpu":
                # process-wide; every worker of one server asks for the same share of the cores
                torch.set_num_threads(threads)
            config = model_dir.load("diarization", context) if model_dir.artifact("diarization") else None
            if config is not None:  # the config's step, so that its pipeline reads the segmentation it expects
                context = replace(context, segmentation_step_ratio=config.segmentation_step)
            self.segmenter = model_dir.load("segmentation", context)
            self.transcriber = model_dir.load("asr", context)
            self.encoder = model_dir.load("embedding", context)
            if model_dir.artifact("diarization") is not None:  # a pyannote config.yaml (production profiles)
                plda = model_dir.load("plda", context) if model_dir.artifact("plda") is not None else None
                self.diarizer = config.diarizer(
                    self.segmenter, self.encoder, plda, device=self.device)
            else:
                # the clustering's split and merge checks pool with their own encoder when the directory has one
                wanted = model_dir.artifact("speaker-check") and self.options.diarization.speaker_check == "auto"
                check = model_dir.load("speaker-check", context) if wanted else None
                self.diarizer = Diarizer(self.segmenter, self.encoder, self.options.diarization, check=check)
            gate = self.options.speech_gate
            self.speech_gate = SpeechGate(gate) if gate is not None else None
            if model_dir.artifact("alignment") is not None:
                self.aligner = model_dir.load("alignment", context)
                self.aligner.fallback = WhisperAligner(self.transcriber, batch_size=batch_size)
            else:
                self.aligner = WhisperAligner(self.transcriber, batch_size=batch_size)
            self.load_seconds = time.perf_counter() - started
        self.voices = VoiceNamer(model_dir, self.encoder)  # caches the voice libraries requests name
        logger.info("models loaded from %s on %s in %.1f s (%d CPU threads)", model_dir.root, self.device,
                    self.load_seconds, threads)

    @classmethod
    def from_model_dir(cls, path: str | os.PathLike = "model", device: str = "auto",
                       options: PipelineOptions | None = None, *,
                       cpu_threads: int | None = None) -> "DiarkitPipeline":
        return cls(ModelDirectory(path), device=device, options=options, cpu_threads=cpu_threads)

    def describe_models(self) -> dict:
        models = self.model_dir.describe()
        models.setdefault("alignment", {"kind": self.aligner.name})  # whisper-attention: no artifact
        if self.speech_gate is not None:
            models["speech_gate"] = {"kind": self.speech_gate.detector.name}
        models["device"] = self.device
        return models

    def transcribe(self, media: str | os.PathLike | np.ndarray, *, uri: str | None = None,
                   options: RequestOptions | None = None,
                   progress: ProgressCallback | None = None) -> TranscriptResult:
        options = options or RequestOptions()
        timings: dict[str, float] = {}
        report = progress or (lambda stage, done, total: None)

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            report(name, 0, 1)
            started = time.perf_counter()
            yield
            release_free_memory()  # the next stage's peak does not land on this one's leftovers
            timings[name] = time.perf_counter() - started
            report(name, 1, 1)

        video_rate = None
        with stage("decode"):
            if isinstance(media, np.ndarray):
                samples = np.ascontiguousarray(media, dtype=np.float32)
                uri = uri or "audio"
            else:
                samples, info = audio_io.decode_media(media)  # one ffprobe: the frame rate comes with it
                uri = uri or Path(media).stem
                video_rate = FrameRate.from_ffprobe(info.video_frame_rate, info.video_timecode)
        duration = samples.shape[0] / audio_io.SAMPLE_RATE

        with stage("vad"):
            segmentation = self.segmenter(samples)
            speech = None
            if self.speech_gate is not None:
                speech = self.speech_gate.decide(samples, segmentation)
                segmentation = gate_segmentation(segmentation, speech.mask,
                                                 keep_ungated=self.speech_gate.options.embed_ungated)
            chunks = speech_chunks(segmentation, onset=self.options.vad_onset, offset=self.options.vad_offset,
                                   chunk_size=self.options.chunk_size)
            chunks = [c for c in chunks if min(c.end, duration) - c.start > 0.05]

        def diarize():
            started = time.perf_counter()
            found = self.diarizer(samples, segmentation, uri=uri, **options.speaker_hints)
            if speech is not None:  # a "speaker" with no confident speech is music the gate let through
                found = self.speech_gate.confirm(found, speech, **options.speaker_hints)
            timings["diarize"] = time.perf_counter() - started  # its own time, even beside the others
            return found

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize") as beside:
            # the pool is this call's own: leaving the block waits for the thread, even on errors
            pending = beside.submit(diarize) if self.options.overlap_diarization else None
            with stage("transcribe"):
                language = self.transcriber.resolve_language(samples, chunks, options.language)
                texts = self.transcriber(samples, chunks, language,
                                         progress=lambda done, total: report("transcribe", done, total + 1),
                                         keep_encoded_bytes=getattr(self.aligner, "encoder_reuse_bytes", 0))
            with stage("align"):
                words_per_chunk = self.aligner(samples, texts, language) if texts else []
            if pending is None:
                with stage("diarize"):
                    diarization = diarize()
            else:
                report("diarize", 0, 1)
                diarization = pending.result()
                report("diarize", 1, 1)
        with stage("assign"):
            words = [w for chunk_words in words_per_chunk for w in chunk_words]
            if speech is not None:  # Whisper writing into music that no speaker holds
                words = drop_unsupported_words(words, speech, diarization, self.speech_gate.options, uri)
            exclusive = self.options.word_speakers == "exclusive" and diarization.exclusive_turns
            assign_word_speakers(words, diarization.exclusive_turns if exclusive else diarization.turns)
            segments = build_segments(words)
            speakers = speaker_summary(diarization.turns, words)
            frame_rate = options.frame_rate or (video_rate.name if video_rate else None)
            if options.frame_rate and video_rate and video_rate.name != options.frame_rate:
                logger.info("%s: frame rate %s asked for, the video is %s", uri, options.frame_rate, video_rate.name)
            # subtitle events are rendered by the writers; what they cannot fix is said here
            subtitle_notes = build_events(words, frame_rate, options.subtitle_rules, duration=duration).warnings

        result = TranscriptResult(
            uri=uri, duration=duration, language=language, segments=segments,
            turns=diarization.turns, speakers=speakers, models=self.describe_models(),
            timings=timings, options={k: v for k, v in options.speaker_hints.items() if v is not None},
            warnings=diarization.warnings + subtitle_notes,
            frame_rate=FrameRate.parse(frame_rate).name, subtitle_rules=get_rules(options.subtitle_rules).name,
        )
        if options.voices:
            with stage("voices"):  # speakers named from a voice library (diarkit.voices)
                self.voices(result, samples, options.voices)
        return result
