"""Word timestamps: wav2vec2 forced alignment when the model directory has it,
otherwise Whisper's own cross-attention alignment (faster-whisper's ``find_alignment``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from diarkit.compat import whisperx
from diarkit.compat.faster_whisper import merge_punctuations, storage_view
from diarkit.compat.whisperx import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram

from diarkit.result import Word
from diarkit.models.asr import ChunkTranscript, Transcriber

logger = logging.getLogger(__name__)

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


class WhisperAligner:
    """Cross-attention DTW on the transcribing model: no extra model, less precise."""

    name = "whisper-attention"

    def __init__(self, transcriber: Transcriber, batch_size: int = 8,
                 encoder_reuse_bytes: int = 128 * 1024 * 1024):
        self.transcriber = transcriber
        self.batch_size = batch_size
        #: how much of the transcription's encoder output the pipeline asks it to keep for this
        #: aligner: re-encoding was 77% of the alignment (4.7 of 6.1 s on 10 min, tiny.en, CPU);
        #: the output is the same bytes whatever the batch (eval/BENCHMARK.md)
        self.encoder_reuse_bytes = encoder_reuse_bytes

    def __call__(self, audio: np.ndarray, chunks: list[ChunkTranscript], language: str) -> list[list[Word]]:
        whisper = self.transcriber.whisper
        tokenizer = self.transcriber.tokenizer(language)
        n_mels = whisper.feat_kwargs.get("feature_size") or 80
        words_per_chunk: list[list[Word]] = []
        for first in range(0, len(chunks), self.batch_size):
            batch = chunks[first:first + self.batch_size]
            pieces = [audio[int(c.start * SAMPLE_RATE):int(c.end * SAMPLE_RATE)][:N_SAMPLES] for c in batch]
            tokens = [tokenizer.encode(" " + c.text) if c.text else [] for c in batch]
            frames = [max(1, round(p.shape[0] / SAMPLE_RATE * whisper.frames_per_second)) for p in pieces]
            todo = [i for i, t in enumerate(tokens) if t]
            alignments: dict[int, list[dict]] = {}
            if todo:
                encoded = self.encode(whisper, [pieces[i] for i in todo], [batch[i].encoded for i in todo], n_mels)
                found = whisper.find_alignment(tokenizer, [tokens[i] for i in todo], encoded, [frames[i] for i in todo])
                alignments = dict(zip(todo, found))
            for i, chunk in enumerate(batch):
                chunk.encoded = None  # used: its memory goes back now, not after the last batch
                timing = alignments.get(i, [])
                merge_punctuations(timing, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
                words = []
                for t in timing:
                    text = t["word"].strip()
                    if not text:
                        continue
                    start = min(max(chunk.start + float(t["start"]), chunk.start), chunk.end)
                    end = min(max(chunk.start + float(t["end"]), start), chunk.end)
                    words.append(Word(text, round(start, 3), round(end, 3), round(float(t["probability"]), 3)))
                words_per_chunk.append(words)
        return words_per_chunk

    @staticmethod
    def encode(whisper, pieces: list[np.ndarray], kept: list[np.ndarray | None], n_mels: int):
        """The encoder output of ``pieces``: the transcription's where it kept it, else encoded here."""
        missing = [i for i, row in enumerate(kept) if row is None]
        if not missing:
            return storage_view(np.stack(kept))
        features = [log_mel_spectrogram(pieces[i], n_mels=n_mels, padding=N_SAMPLES - pieces[i].shape[0]).numpy()
                    [:, : whisper.feature_extractor.nb_max_frames] for i in missing]
        fresh = whisper.encode(np.stack(features))
        if len(missing) == len(kept):
            return fresh  # nothing kept (or on a GPU): as it comes, wherever it lives
        rows = list(kept)
        for i, row in zip(missing, np.asarray(fresh)):
            rows[i] = row
        return storage_view(np.stack(rows))


class Wav2Vec2Aligner:
    """whisperx's CTC forced alignment with a local wav2vec2 model (HF folder or torchaudio bundle)."""

    name = "wav2vec2"

    def __init__(self, model_name: str | Path, language: str, device: str = "cpu", *,
                 model_dir: str | Path | None = None):
        self.device = device
        self.language = language
        self.fallback = None  # the aligner for other languages (the pipeline sets WhisperAligner)
        self.model, self.metadata = whisperx.load_align_model(
            language_code=language, device=device, model_name=str(model_name),
            model_dir=None if model_dir is None else str(model_dir), model_cache_only=True,
        )

    def __call__(self, audio: np.ndarray, chunks: list[ChunkTranscript], language: str) -> list[list[Word]]:
        if language != self.language:
            if self.fallback is not None:  # a multilingual Whisper heard another language
                logger.info("no %s wav2vec2 model: word times from Whisper's attention", language)
                return self.fallback(audio, chunks, language)
            raise ValueError(f"alignment model is for {self.language!r}, not {language!r}")
        segments = [{"start": c.start, "end": c.end, "text": c.text} for c in chunks]
        aligned = whisperx.align(segments, self.model, self.metadata, audio, self.device)
        # whisperx splits chunks into sentences; put words back under the chunk they fall in
        words_per_chunk: list[list[Word]] = [[] for _ in chunks]
        for segment in aligned["segments"]:
            for w in segment.get("words", []):
                if "start" not in w:
                    continue
                index = next((i for i, c in enumerate(chunks) if c.start - 0.01 <= w["start"] <= c.end + 0.01),
                             len(chunks) - 1)
                words_per_chunk[index].append(
                    Word(w["word"], round(w["start"], 3), round(w["end"], 3), round(float(w.get("score", 0.0)), 3)))
        return words_per_chunk


def load_wav2vec2_huggingface(path: Path, artifact, context) -> Wav2Vec2Aligner:
    """Registry loader for a Hugging Face wav2vec2 CTC folder."""
    return Wav2Vec2Aligner(path, language=artifact.settings.get("language", "en"), device=context.device)


def load_wav2vec2_torchaudio(path: Path, artifact, context) -> Wav2Vec2Aligner:
    """Registry loader for a torchaudio wav2vec2 bundle file in the model directory.

    torchaudio downloads the bundle's file when it is not in ``model_dir``: its presence is
    checked first, so a missing file is a ModelDirectoryError and never a download.
    """
    from diarkit.errors import ModelDirectoryError
    from diarkit.compat.torchaudio import bundle_file

    bundle = artifact.settings.get("bundle") or artifact.source.get("bundle", "WAV2VEC2_ASR_BASE_960H")
    try:
        expected = path / bundle_file(bundle)
    except ValueError as exc:
        raise ModelDirectoryError(f"alignment artifact: {exc}", path=str(path),
                                  hint="settings.bundle must name a torchaudio wav2vec2 bundle") from exc
    if not expected.is_file():
        raise ModelDirectoryError(f"alignment model file {expected.name} (torchaudio {bundle}) is missing",
                                  path=str(path), hint="re-run scripts/fetch_models.py or check the archive")
    return Wav2Vec2Aligner(bundle, language=artifact.settings.get("language", "en"),
                           device=context.device, model_dir=path)
