"""Simulated conversations with exact references, from single-speaker utterances.

Why: real data (AMI excerpts) is small and its references are human-made; a simulated
conversation has references that are exact by construction, with a chosen number of
speakers and a controlled amount of overlap.

How one conversation is built (deterministic for ``seed`` and the file index ``i``:
conversation ``i`` is the same whatever ``--num-files`` is):
- choose ``k`` speakers (uniform in [min, max]); the first ``k`` turns are a random
  permutation of them (so everyone speaks), later turns never repeat the previous speaker;
- each turn is one utterance of that speaker (each speaker's utterances drawn without
  replacement, in a shuffled order), with leading/trailing silence trimmed (frames more
  than ``trim_db`` below the utterance's loudest 10 ms frame, and never below the midpoint
  between its noise floor and speech level: see ``speech_threshold``), cut to a 1 ms grid;
- consecutive turns are separated by a pause ~ Exponential(mean ``pause_mean``), except for
  overlapping transitions: random transitions get an overlap ~ U(overlap_min, overlap_max),
  capped at half of the shorter of the two turns (so never three voices at once), until
  overlap time / speech time (union) reaches ``overlap_ratio``;
- the mix is the sum of the placed utterances at their original levels, scaled down as a
  whole if it would clip, written as 16 kHz mono 16-bit WAV.
- pauses inside an utterance at least ``split_pauses`` long (0.8 s by default: in the
  human AMI references 95% of same-speaker gaps are 0.84 s or longer, so shorter pauses are
  bridged there, and a stricter rule would score the annotation convention, not the system) of
  frames more than ``pause_db`` (30) below its loudest frame are not speech (trimming uses
  a laxer 40 dB so that weak word endings stay in): the utterance becomes
  several RTTM lines (LibriSpeech has no word times here, so energy decides; 0 = one line
  per utterance).
The RTTM times are exact to the sample (all on the 1 ms grid). The reported overlap ratio
is measured on the RTTM, so it can be a little under the target when an overlap falls in a
pause. The UEM is the whole file. ``groups.tsv`` maps each file to ``<k>spk`` for ``score --groups``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
GRID = SAMPLE_RATE // 1000  # samples per millisecond: every time in the RTTM is a whole ms


class SimulationError(ValueError):
    """Bad simulation input (missing data folder, impossible options)."""


@dataclass
class SimConfig:
    data: str = "../shared/data/librispeech-test-other"
    out: str = "sim"
    num_files: int = 10
    min_speakers: int = 2
    max_speakers: int = 4
    turns: int = 12
    pause_mean: float = 0.6
    overlap_ratio: float = 0.05
    overlap_min: float = 0.3
    overlap_max: float = 2.0
    lead: float = 0.5
    tail: float = 0.5
    trim_db: float = 40.0
    split_pauses: float = 0.8
    pause_db: float = 30.0
    max_turn: float = 0.0
    seed: int = 0
    prefix: str = "sim"

    def check(self) -> None:
        if self.num_files < 1:
            raise SimulationError("--num-files must be >= 1")
        if not 1 <= self.min_speakers <= self.max_speakers:
            raise SimulationError("need 1 <= --min-speakers <= --max-speakers")
        if not 0 <= self.overlap_ratio < 1:
            raise SimulationError("--overlap-ratio must be in [0, 1)")
        if self.pause_mean < 0 or self.overlap_min < 0 or self.overlap_max < self.overlap_min:
            raise SimulationError("pauses/overlaps must be >= 0 and --overlap-max >= --overlap-min")


@dataclass
class Placement:
    speaker: str
    source: str  # path relative to the data folder
    start: int  # samples in the conversation
    length: int  # samples
    source_offset: int  # first sample taken from the (decoded) source
    speech: list[tuple[int, int]] = field(default_factory=list)  # RTTM regions, samples from ``start``

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass
class Conversation:
    uri: str
    speakers: list[str]
    placements: list[Placement]
    num_samples: int
    gain: float = 1.0
    overlap_ratio: float = 0.0
    audio: np.ndarray | None = field(default=None, repr=False)


def index_utterances(data: Path) -> dict[str, list[Path]]:
    """``<speaker>/<speaker>-<chapter>-<utt>.flac`` -> {speaker: sorted files}."""
    if not data.is_dir():
        raise SimulationError(f"{data} not found: pass --data (LibriSpeech-style folder "
                              "<speaker>/<speaker>-<chapter>-<utt>.flac)")
    index: dict[str, list[Path]] = {}
    for f in sorted(data.glob("*/*.flac")) + sorted(data.glob("*/*.wav")):
        index.setdefault(f.parent.name, []).append(f)
    index = {k: sorted(v) for k, v in sorted(index.items())}
    if not index:
        raise SimulationError(f"{data}: no <speaker>/*.flac files")
    return index


def frame_levels(audio: np.ndarray) -> np.ndarray:
    """Level of each 10 ms frame in dB."""
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    return 20 * np.log10(rms)


def speech_threshold(db: np.ndarray, below_loudest: float) -> float:
    """Frames under this level are not speech.

    ``below_loudest`` dB under the loudest frame alone calls a recording's room noise
    speech when the recording is quiet (LibriSpeech noise floors sit 35-45 dB under the
    peaks), and references then start half a second before the voice does. So the
    threshold is never lower than halfway (in dB) between the noise floor (10th
    percentile frame) and the speech level (95th percentile): the classic bimodal
    energy-VAD split.
    """
    if db.size == 0:
        return float("inf")
    floor, level = np.percentile(db, 10), np.percentile(db, 95)
    return float(max(db.max() - below_loudest, (floor + level) / 2))


def load_utterance(path: Path, trim_db: float) -> tuple[np.ndarray, int]:
    """Mono float64 16 kHz samples with silence trimmed; returns (samples, offset into the decoded file)."""
    audio, sr = sf.read(str(path), dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(sr, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, sr // g)
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    start, end = 0, n * frame
    if trim_db > 0 and n > 0:
        db = frame_levels(audio)
        loud = np.flatnonzero(db >= speech_threshold(db, trim_db))
        start, end = int(loud[0]) * frame, (int(loud[-1]) + 1) * frame
    end = start + (end - start) // GRID * GRID
    return audio[start:end], start


def speech_regions(audio: np.ndarray, pause_db: float, min_pause: float) -> list[tuple[int, int]]:
    """Speech stretches of a trimmed utterance: all of it minus inner runs of 10 ms frames quieter than
    ``pause_db`` below the loudest frame lasting at least ``min_pause`` seconds."""
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    if pause_db <= 0 or min_pause <= 0 or n == 0:
        return [(0, len(audio))]
    quiet = frame_levels(audio) < speech_threshold(frame_levels(audio), pause_db)
    regions, start, j = [], 0, 0
    min_frames = int(round(min_pause * 100))
    while j < n:
        if quiet[j]:
            k = j
            while k < n and quiet[k]:
                k += 1
            if k - j >= min_frames and j > 0 and k < n:
                regions.append((start, j * frame))
                start = k * frame
            j = k
        else:
            j += 1
    regions.append((start, len(audio)))
    return [(a, b) for a, b in regions if b > a]


def build_conversation(cfg: SimConfig, index: dict[str, list[Path]], i: int,
                       cache: dict[Path, tuple[np.ndarray, int]] | None = None) -> Conversation:
    """Conversation number ``i`` (see the module docstring for the recipe)."""
    cache = {} if cache is None else cache
    data = Path(cfg.data)
    rng = np.random.default_rng([cfg.seed, i])
    names = list(index)
    if cfg.max_speakers > len(names):
        raise SimulationError(f"--max-speakers {cfg.max_speakers} > {len(names)} speakers in {data}")
    k = int(rng.integers(cfg.min_speakers, cfg.max_speakers + 1))
    speakers = [names[j] for j in rng.choice(len(names), size=k, replace=False)]
    n_turns = max(cfg.turns, k)
    order = [speakers[j] for j in rng.permutation(k)]
    while len(order) < n_turns:
        choices = [s for s in speakers if s != order[-1]] or speakers
        order.append(choices[int(rng.integers(len(choices)))])
    queues = {s: [index[s][j] for j in rng.permutation(len(index[s]))] for s in speakers}
    used = {s: 0 for s in speakers}

    clips = []
    for s in order:
        path = queues[s][used[s] % len(queues[s])]
        used[s] += 1
        if path not in cache:
            cache[path] = load_utterance(path, cfg.trim_db)
        audio, offset = cache[path]
        if cfg.max_turn > 0:
            audio = audio[: int(cfg.max_turn * SAMPLE_RATE) // GRID * GRID]
        clips.append((s, path, audio, offset))

    lengths = [len(c[2]) for c in clips]
    ms = lambda seconds: int(round(seconds * 1000)) * GRID  # noqa: E731  seconds -> samples on the ms grid
    gaps = [ms(rng.exponential(cfg.pause_mean)) if cfg.pause_mean > 0 else 0 for _ in range(n_turns - 1)]
    speech = sum(lengths)
    budget = ms(cfg.overlap_ratio * speech / (1 + cfg.overlap_ratio) / SAMPLE_RATE)
    for j in rng.permutation(n_turns - 1) if n_turns > 1 else []:
        if budget <= 0:
            break
        cap = min(lengths[j], lengths[j + 1]) // 2 // GRID * GRID
        want = ms(rng.uniform(cfg.overlap_min, cfg.overlap_max))
        overlap = min(want, cap, budget)
        if overlap >= GRID * 50:  # skip overlaps under 50 ms
            gaps[j] = -overlap
            budget -= overlap

    placements = []
    cursor = ms(cfg.lead)
    for j, (s, path, audio, offset) in enumerate(clips):
        if j > 0:
            cursor = placements[-1].end + gaps[j - 1]
        placements.append(Placement(s, path.relative_to(data).as_posix(), cursor, len(audio), offset,
                                    speech_regions(audio, cfg.pause_db, cfg.split_pauses)))
    total = max(p.end for p in placements) + ms(cfg.tail)
    mix = np.zeros(total)
    for p, (_, _, audio, _) in zip(placements, clips):
        mix[p.start:p.end] += audio
    peak = float(np.abs(mix).max()) if total else 0.0
    gain = 0.99 / peak if peak > 0.99 else 1.0
    active = np.zeros(total, dtype=np.int8)
    for p in placements:
        for a, b in p.speech:
            active[p.start + a:p.start + b] += 1
    speech_time, overlap_time = int(np.count_nonzero(active)), int(np.count_nonzero(active > 1))
    conv = Conversation(uri=f"{cfg.prefix}{i:03d}", speakers=sorted(speakers), placements=placements,
                        num_samples=total, gain=gain,
                        overlap_ratio=overlap_time / speech_time if speech_time else 0.0)
    conv.audio = mix * gain
    return conv


def rttm_lines(conv: Conversation) -> list[str]:
    turns = sorted((p.start + a, b - a, p.speaker) for p in conv.placements for a, b in p.speech)
    return [f"SPEAKER {conv.uri} 1 {start / SAMPLE_RATE:.3f} {length / SAMPLE_RATE:.3f} <NA> <NA> "
            f"{speaker} <NA> <NA>" for start, length, speaker in turns]


def simulate(cfg: SimConfig) -> list[Conversation]:
    """Write ``<prefix>NNN.{wav,rttm,uem}``, ``groups.tsv`` and ``simulate.json`` into ``cfg.out``."""
    cfg.check()
    index = index_utterances(Path(cfg.data))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache: dict[Path, tuple[np.ndarray, int]] = {}
    conversations, manifest = [], []
    for i in range(cfg.num_files):
        conv = build_conversation(cfg, index, i, cache)
        sf.write(str(out / f"{conv.uri}.wav"), conv.audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        (out / f"{conv.uri}.rttm").write_text("\n".join(rttm_lines(conv)) + "\n", encoding="utf-8")
        (out / f"{conv.uri}.uem").write_text(f"{conv.uri} 1 0.000 {conv.num_samples / SAMPLE_RATE:.3f}\n",
                                             encoding="utf-8")
        manifest.append({"uri": conv.uri, "speakers": conv.speakers, "duration": conv.num_samples / SAMPLE_RATE,
                         "gain": conv.gain, "overlap_ratio": round(conv.overlap_ratio, 6),
                         "turns": [asdict(p) for p in conv.placements]})
        log.info("%s: %d speakers, %d turns, %.1f s, overlap %.1f%%", conv.uri, len(conv.speakers),
                 len(conv.placements), conv.num_samples / SAMPLE_RATE, 100 * conv.overlap_ratio)
        conv.audio = None  # keep memory flat for many files
        conversations.append(conv)
    (out / "groups.tsv").write_text("".join(f"{c.uri}\t{len(c.speakers)}spk\n" for c in conversations),
                                    encoding="utf-8")
    config = {k: v for k, v in asdict(cfg).items() if k != "out"}  # same bytes whatever the output folder
    (out / "simulate.json").write_text(json.dumps({"config": config, "sample_rate": SAMPLE_RATE,
                                                   "files": manifest}, indent=2) + "\n", encoding="utf-8")
    return conversations
