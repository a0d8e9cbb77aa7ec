"""Batched transcription with faster-whisper through whisperx.

whisperx's ``FasterWhisperPipeline`` batches speech chunks through CTranslate2; we feed it
the chunks our VAD already found rather than letting it run a second VAD of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from diarkit.compat import whisperx
from diarkit.compat.faster_whisper import Tokenizer
from diarkit.compat.whisperx import SAMPLE_RATE

from diarkit.errors import OptionsError
from diarkit.vad import SpeechChunk

logger = logging.getLogger(__name__)


@dataclass
class ChunkTranscript:
    """Whisper's text for one speech chunk (times are the chunk's)."""

    start: float
    end: float
    text: str
    avg_logprob: float
    #: the Whisper encoder's output for this chunk, kept for the cross-attention alignment
    #: (which would otherwise encode the chunk again); the aligner drops it once used
    encoded: np.ndarray | None = field(default=None, repr=False, compare=False)


class _NoVad:
    """Placeholder: whisperx requires a VAD object, but chunks come from diarkit's VAD."""

    def __call__(self, *args, **kwargs):  # pragma: no cover - never called
        raise RuntimeError("diarkit passes speech chunks explicitly")


class Transcriber:
    def __init__(self, model_path: str | Path, *, device: str = "cpu", compute_type: str = "int8",
                 language: str | None = None, batch_size: int = 8, beam_size: int = 5,
                 cpu_threads: int | None = None):
        self.model_path = str(model_path)
        self.device = device
        self.compute_type = compute_type
        self.batch_size = batch_size
        self.default_language = language
        threads = cpu_threads or os.cpu_count() or 1
        self.pipeline = whisperx.load_model(
            self.model_path, device, compute_type=compute_type, language=language,
            vad_model=_NoVad(), threads=threads, local_files_only=True,
            asr_options={"beam_size": beam_size, "best_of": beam_size},
        )
        self.english_only = not self.pipeline.model.model.is_multilingual
        whisperx.tap_encoder(self.pipeline.model)  # so a call can keep the encoder outputs

    @property
    def whisper(self):
        """The faster-whisper model (used for word alignment)."""
        return self.pipeline.model

    def tokenizer(self, language: str):
        return Tokenizer(self.whisper.hf_tokenizer, self.whisper.model.is_multilingual,
                         task="transcribe", language=language)

    def resolve_language(self, audio: np.ndarray, chunks: list[SpeechChunk], language: str | None) -> str:
        if self.english_only:
            if language not in (None, "en"):
                raise OptionsError(f"language {language!r} is not supported by this English-only model",
                                   hint="use language=en or a multilingual model profile")
            return "en"
        if language:
            if language not in self.whisper.supported_languages:
                raise OptionsError(f"unknown language code {language!r}")
            return language
        if self.default_language:
            return self.default_language
        if not chunks:
            return "en"
        first = chunks[0]
        return self.pipeline.detect_language(audio[int(first.start * SAMPLE_RATE):])

    def __call__(self, audio: np.ndarray, chunks: list[SpeechChunk], language: str,
                 progress: Callable[[int, int], None] | None = None, *,
                 keep_encoded_bytes: int = 0) -> list[ChunkTranscript]:
        """``keep_encoded_bytes``: keep each chunk's encoder output (``ChunkTranscript.encoded``)
        up to this many bytes in all, for the alignment (CPU only; 2.3 MB a chunk for tiny)."""
        if not chunks:
            return []
        pipe = self.pipeline
        if pipe.tokenizer is None or pipe.tokenizer.language_code != language:
            pipe.tokenizer = self.tokenizer(language)

        def inputs():
            for chunk in chunks:
                yield {"inputs": audio[int(chunk.start * SAMPLE_RATE):int(chunk.end * SAMPLE_RATE)]}

        kept: list[np.ndarray | None] = []
        budget = keep_encoded_bytes if self.device == "cpu" else 0

        def keep(output) -> None:  # one call per batch, its rows in chunk order
            nonlocal budget
            try:
                rows = np.asarray(output)  # a CPU StorageView is an array
            except (TypeError, ValueError):  # a type numpy lacks (bfloat16): encoded again later
                rows = [None] * output.shape[0]
            for row in rows:
                if row is not None and row.nbytes <= budget:
                    kept.append(row.copy())  # a copy: the batch's buffer is freed with the batch
                    budget -= row.nbytes
                else:
                    kept.append(None)

        out: list[ChunkTranscript] = []
        with whisperx.encoder_outputs(keep) if budget > 0 else contextlib.nullcontext():
            for index, item in enumerate(pipe(inputs(), batch_size=self.batch_size, num_workers=0)):
                text, logprob = item["text"], item["avg_logprob"]
                if isinstance(text, list):
                    text, logprob = text[0], logprob[0]
                chunk = chunks[index]
                out.append(ChunkTranscript(chunk.start, chunk.end, text.strip(), float(logprob)))
                if progress:
                    progress(index + 1, len(chunks))
        if len(kept) == len(out):
            for transcript, encoded in zip(out, kept):
                transcript.encoded = encoded
        elif kept:  # not one encoder row per chunk: the alignment encodes again, as without
            logger.debug("encoder outputs: %d for %d chunks, not kept", len(kept), len(out))
        return out


def load_faster_whisper(path: Path, artifact, context) -> Transcriber:
    """Registry loader: float16 on a GPU, int8 on the CPU."""
    return Transcriber(path, device=context.device.split(":")[0],
                       compute_type="float16" if context.cuda else "int8",
                       language=artifact.settings.get("language"), batch_size=context.batch_size,
                       beam_size=context.beam_size, cpu_threads=context.cpu_threads)
