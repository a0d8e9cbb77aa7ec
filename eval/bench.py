"""Speed and memory benchmark of diarkit on long media, against the reference tools.

``python -m eval bench [--minutes 1,10,60] [--out eval/BENCHMARK.md] [--work DIR] [--skip-reference]``

1. Test media: the shared AMI excerpts (``ami-excerpts/*.flac``) and simulated conversations
   (``eval simulate``, seed 0, built into ``WORK/sim``) are interleaved (ami0, sim0, ami1, sim1, ...,
   then the rest of the longer list) and cycled until the requested length is reached; the last
   piece is cut. 16 kHz mono PCM16 WAV, written with soundfile. Same inputs, same bytes; the
   N-minute file is a prefix of every longer one.
2. diarkit: each length runs in its own fresh subprocess (``python -m eval.bench _diarkit``):
   cold import + ``DiarkitPipeline.from_model_dir`` (model load), ``transcribe`` (per-stage times
   from ``result.timings``) and writing (render + write json/srt/vtt/rttm/txt).
   Memory: ``peak_rss`` is that child's ``ru_maxrss`` (whole-process high-water mark, includes the
   models); per stage, a thread samples ``/proc/self/status`` VmRSS every 20 ms and records the
   peak during the stage and the growth over the RSS at the stage's start. Every child (diarkit
   and reference) starts from the same page cache: see ``settle_library_pages``.
3. Reference (10-minute media, when it is among the lengths): one fresh subprocess running
   (1) whisperx batched transcription with the bundled tiny.en (``vad_method="pyannote"``,
   ``batch_size=8``) and (2) the straightforward pyannote.audio pipeline on diarkit's segmentation
   model and speaker encoder (``LocalSpeakerDiarization`` with no precomputed segmentation and
   ``embedding_batch_size=1``, pyannote's default), back to back on the same audio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000
STAGES = ("decode", "vad", "transcribe", "align", "diarize", "assign")
STAGE_NAMES = {"decode": "decode", "vad": "VAD", "transcribe": "transcription", "align": "alignment",
               "diarize": "diarization", "assign": "assignment", "write": "writing"}
FORMATS = "json,srt,vtt,rttm,txt"
SIM_FILES = 8
#: issue 18 (speed and memory that do not grow with the cast); GB read as decimal gigabytes
TARGETS = {"rtf_10": 0.07, "speedup_10": 2.0, "diarize_many_ratio": 1.3, "scale_60_10": 6.6,
           "rss_10_gb": 2.0, "rss_60_gb": 2.3, "load_s": 8.0}
RSS_LIMIT_MIB = TARGETS["rss_60_gb"] * 1e9 / 2**20  # 2193 MiB
RSS_10_LIMIT_MIB = TARGETS["rss_10_gb"] * 1e9 / 2**20  # 1907 MiB
#: the many-voices media's key in the runs ("10 min, many voices")
MANY = "10mv"
#: pitch/formant shifts (resampling factors) that make three voices of each LibriSpeech speaker
VOICE_SHIFTS = (0.82, 1.0, 1.22)


class BenchError(RuntimeError):
    """The benchmark cannot run (missing data, a child process failed)."""


# -- media ---------------------------------------------------------------------------------------
def _read_mono16k(path: Path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE)
    return np.ascontiguousarray(audio, dtype=np.float32)


def source_files(data_root: str | Path, work: str | Path, sim_files: int = SIM_FILES) -> list[Path]:
    """AMI excerpts and simulated conversations (simulated into WORK/sim once), interleaved."""
    data_root, work = Path(data_root), Path(work)
    ami_dir = data_root / "ami-excerpts"
    libri = data_root / "librispeech-test-other"
    if not ami_dir.is_dir() or not libri.is_dir():
        raise BenchError(f"{data_root}: needs ami-excerpts/ and librispeech-test-other/ (the shared data)")
    ami = sorted(ami_dir.glob("*.flac"))
    sim_dir = work / "sim"
    sims = sorted(sim_dir.glob("sim*.wav"))
    if len(sims) < sim_files:
        from .simulate import SimConfig, simulate

        simulate(SimConfig(data=str(libri), out=str(sim_dir), num_files=sim_files, min_speakers=2,
                           max_speakers=4, overlap_ratio=0.05, seed=0, prefix="sim"))
        sims = sorted(sim_dir.glob("sim*.wav"))
    sims = sims[:sim_files]
    order: list[Path] = []
    for i in range(max(len(ami), len(sims))):
        order.extend(x[i] for x in (ami, sims) if i < len(x))
    if not order:
        raise BenchError(f"no source audio in {ami_dir} or {sim_dir}")
    return order


def build_media(minutes: float, out: str | Path, sources: list[Path]) -> dict[str, Any]:
    """Concatenate ``sources`` cyclically into exactly ``minutes`` of 16 kHz mono PCM16 WAV."""
    import soundfile as sf

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    total = int(round(minutes * 60 * SAMPLE_RATE))
    cache: dict[Path, np.ndarray] = {}
    pieces: list[str] = []
    written = 0
    tmp = out.with_name(out.name + ".part")
    with sf.SoundFile(str(tmp), "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16", format="WAV") as f:
        i = 0
        while written < total:
            src = sources[i % len(sources)]
            if src not in cache:
                cache[src] = _read_mono16k(src)
            piece = cache[src][: total - written]
            if piece.size == 0:
                raise BenchError(f"{src}: empty audio")
            f.write(piece)
            written += piece.size
            pieces.append(src.name)
            i += 1
    os.replace(tmp, out)
    return {"path": str(out), "minutes": minutes, "samples": written, "duration": written / SAMPLE_RATE,
            "pieces": len(pieces)}


def many_voices_voices(data_root: str | Path) -> list[tuple[Path, float]]:
    """(LibriSpeech speaker folder, shift) for every speaker and every shift in VOICE_SHIFTS."""
    libri = Path(data_root) / "librispeech-test-other"
    speakers = sorted(p for p in libri.iterdir() if p.is_dir()) if libri.is_dir() else []
    if not speakers:
        raise BenchError(f"{libri}: no LibriSpeech speaker folders (the shared data)")
    return [(spk, shift) for spk in speakers for shift in VOICE_SHIFTS]


def _shifted(audio: np.ndarray, shift: float) -> np.ndarray:
    """Pitch and formants times ``shift`` (and tempo: as ffmpeg asetrate), by resampling."""
    if shift == 1.0:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=int(round(SAMPLE_RATE * shift)), target_sr=SAMPLE_RATE).astype(np.float32)


def build_many_voices_media(minutes: float, out: str | Path, data_root: str | Path, *, seed: int = 0,
                            voices_per_block: int = 3, turns_per_voice: int = 2,
                            utterance_seconds: float = 7.0, ami_seconds: float = 12.0,
                            pause: float = 0.4) -> dict[str, Any]:
    """``minutes`` of conversation with many distinct voices, deterministic for ``seed``.

    Every LibriSpeech speaker gives three voices (VOICE_SHIFTS: pitch and formants shifted by
    resampling, which a speaker encoder hears as different people). The voices, shuffled,
    talk in blocks of ``voices_per_block`` (``turns_per_voice`` utterances each, alternating,
    ``pause`` s apart, each cut to ``utterance_seconds``); after each block comes ``ami_seconds`` of the next AMI excerpt (real
    meetings: more voices, overlap). All LibriSpeech voices speak before any repeats, so 10
    minutes hold 30 LibriSpeech voices and the AMI speakers. 16 kHz mono PCM16 WAV.
    """
    import soundfile as sf

    data_root, out = Path(data_root), Path(out)
    ami = sorted((data_root / "ami-excerpts").glob("*.flac"))
    voices = many_voices_voices(data_root)
    if not ami:
        raise BenchError(f"{data_root / 'ami-excerpts'}: no AMI excerpts (the shared data)")
    rng = np.random.default_rng(seed)
    order = [voices[i] for i in rng.permutation(len(voices))]
    utterances = {spk: sorted(spk.rglob("*.flac")) for spk, _ in voices}
    used: dict[tuple[Path, float], int] = {}
    total = int(round(minutes * 60 * SAMPLE_RATE))
    gap = np.zeros(int(pause * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    written, block, pieces = 0, 0, 0
    heard: set[str] = set()
    while written < total:
        group = [order[(block * voices_per_block + j) % len(order)] for j in range(voices_per_block)]
        for turn in range(turns_per_voice * voices_per_block):
            voice = group[turn % voices_per_block]
            files = utterances[voice[0]]
            n = used.get(voice, 0)
            used[voice] = n + 1
            # each shift of a speaker starts at a different utterance: no sentence heard twice
            src = files[(n + VOICE_SHIFTS.index(voice[1]) * 3) % len(files)]
            audio = _shifted(_read_mono16k(src), voice[1])[: int(utterance_seconds * SAMPLE_RATE)]
            peak = float(np.abs(audio).max()) or 1.0
            parts += [audio * min(1.0, 0.7 / peak), gap]
            written += audio.size + gap.size
            pieces += 1
            heard.add(f"{voice[0].name}@{voice[1]:g}")
        clip = _read_mono16k(ami[block % len(ami)])[: int(ami_seconds * SAMPLE_RATE)]
        parts += [clip, gap]
        written += clip.size + gap.size
        pieces += 1
        heard.add(f"ami:{ami[block % len(ami)].stem}")
        block += 1
    mix = np.concatenate(parts)[:total]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    sf.write(str(tmp), mix, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, out)
    libri_voices = sum(1 for v in heard if not v.startswith("ami:"))
    return {"path": str(out), "minutes": minutes, "samples": int(mix.size), "duration": mix.size / SAMPLE_RATE,
            "pieces": pieces, "libri_voices": libri_voices, "ami_excerpts": len(heard) - libri_voices,
            "seed": seed}


# -- memory sampling (children) ------------------------------------------------------------------
def _vmrss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _maxrss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


class RssSampler:
    """Samples VmRSS every ``interval`` s; per stage: RSS at start, peak during, RSS at end."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.stage: str | None = None
        self.stats: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.enter(None)
        self._stop.set()
        self._thread.join()

    def enter(self, stage: str | None) -> None:
        with self._lock:
            if stage == self.stage:
                return
            rss = _vmrss_mib()
            if self.stage is not None:
                s = self.stats[self.stage]
                s["end_mib"] = rss
                s["peak_mib"] = max(s["peak_mib"], rss)
            self.stage = stage
            if stage is not None:
                self.stats[stage] = {"start_mib": rss, "peak_mib": rss, "end_mib": rss}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = _vmrss_mib()
            with self._lock:
                if self.stage is not None:
                    s = self.stats[self.stage]
                    s["peak_mib"] = max(s["peak_mib"], rss)


# -- child: diarkit ------------------------------------------------------------------------------
def child_diarkit(media: str, model_dir: str, out_dir: str, overlap: bool = False) -> dict[str, Any]:
    with RssSampler() as rss:
        rss.enter("load")
        started = time.perf_counter()
        from diarkit.pipeline import DiarkitPipeline, PipelineOptions
        from diarkit.writers import write_outputs

        imported = time.perf_counter()
        options = PipelineOptions(overlap_diarization=overlap)
        pipeline = DiarkitPipeline.from_model_dir(model_dir, device="cpu", options=options)
        loaded = time.perf_counter()
        t0 = time.perf_counter()
        result = pipeline.transcribe(media, progress=lambda stage, done, total: rss.enter(stage))
        transcribe_wall = time.perf_counter() - t0
        rss.enter("write")
        t0 = time.perf_counter()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_outputs(result, out_dir, FORMATS)
        write_s = time.perf_counter() - t0
        rss.enter(None)
    words = sum(len(s.words) for s in result.segments)
    return {
        "media": media, "duration": result.duration,
        "import_s": imported - started, "construct_s": loaded - imported, "load_s": loaded - started,
        "timings": {**{k: result.timings.get(k, 0.0) for k in STAGES}, "write": write_s},
        "num_speakers": len(result.speakers), "num_words": words, "num_segments": len(result.segments),
        "num_turns": len(result.turns), "peak_rss_mib": _maxrss_mib(), "stage_rss": rss.stats,
        "torch_threads": _torch_threads(), "overlap_diarization": overlap,
        "transcribe_wall_s": transcribe_wall,
    }


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


# -- child: reference ----------------------------------------------------------------------------
def child_reference(media: str, model_dir: str) -> dict[str, Any]:
    from diarkit.models.manifest import force_offline

    force_offline()
    import torch
    import whisperx

    torch.set_num_threads(max(1, os.cpu_count() or 1))  # as diarkit does on CPU
    from diarkit.diarization.diarizer import DiarizationOptions, LocalSpeakerDiarization
    from diarkit.models.manifest import ModelDirectory
    from diarkit.models.registry import LoadContext
    from diarkit.models.segmentation import Segmenter

    md = ModelDirectory(model_dir)
    out: dict[str, Any] = {"media": media}
    t = time.perf_counter()
    asr = whisperx.load_model(str(md.path("asr")), "cpu", compute_type="int8", language="en",
                              vad_method="pyannote")
    out["whisperx_load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    audio = whisperx.load_audio(media)
    out["decode_s"] = time.perf_counter() - t
    out["duration"] = audio.shape[0] / SAMPLE_RATE
    t = time.perf_counter()
    transcript = asr.transcribe(audio, batch_size=8)
    out["whisperx_transcribe_s"] = time.perf_counter() - t
    out["whisperx_segments"] = len(transcript["segments"])
    out["rss_after_whisperx_mib"] = _maxrss_mib()

    t = time.perf_counter()
    device = torch.device("cpu")
    segmenter = Segmenter(md.path("segmentation"), device)
    encoder = md.load("embedding", LoadContext(device="cpu", cpu_threads=torch.get_num_threads()))
    options = DiarizationOptions()
    options.embedding_batch_size = 1
    pipe = LocalSpeakerDiarization(segmenter, encoder, options)
    pipe.instantiate(options.parameters())
    out["pyannote_load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with torch.inference_mode():
        diar = pipe({"waveform": torch.from_numpy(audio).unsqueeze(0), "sample_rate": SAMPLE_RATE,
                     "uri": Path(media).stem})
    out["pyannote_diarize_s"] = time.perf_counter() - t
    out["pyannote_speakers"] = len(diar.speaker_diarization.labels())
    out["segmentation_batch_size"] = segmenter.inference.batch_size
    out["embedding_batch_size"] = pipe.embedding_batch_size
    out["peak_rss_mib"] = _maxrss_mib()
    return out


# -- parent --------------------------------------------------------------------------------------
def evict_library_pages(roots: list[Path] | None = None) -> dict[str, float]:
    """Drop the environment's shared libraries (``*.so*``) from the page cache.

    A child's RSS counts the library pages it maps, and the kernel maps a page-cache folio
    whole: a library last read sequentially (``pip install`` writing and hashing it, ``cat``, a
    backup) sits in large folios, and the same import maps about 300 MiB more (measured
    2026-12-07, eval/BENCHMARK.md).
    ``posix_fadvise(DONTNEED)`` drops only clean pages no process maps; no root needed.
    """
    roots = roots or sorted({Path(sys.prefix), Path(sys.base_prefix)})
    files = size = 0
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                if not (name.endswith(".so") or ".so." in name):  # libx.so, libx.so.12
                    continue
                try:
                    fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    files += 1
                    size += os.fstat(fd).st_size
                finally:
                    os.close(fd)
    return {"files": files, "mib": size / 2**20}


def settle_library_pages() -> dict[str, float]:
    """Start every measured child from the same page cache: libraries read by page faults.

    Evicts the libraries, then imports diarkit's stack once in a throw-away process, so the
    measured child's import is warm (cold start as before) and its RSS does not depend on how
    the library files were last read.
    """
    evicted = evict_library_pages()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import diarkit.pipeline, whisperx"], cwd=str(REPO_ROOT),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return {"evicted_files": evicted["files"], "evicted_mib": round(evicted["mib"], 1),
            "warm_up_s": round(time.perf_counter() - started, 2)}


def _run_child(args: list[str], result_json: Path, log_path: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "eval.bench", *args, "--json", str(result_json)]
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0"}
    library_pages = settle_library_pages()
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=str(REPO_ROOT), stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not result_json.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"{' '.join(cmd)} failed ({proc.returncode}): {' | '.join(tail)}")
    data = json.loads(result_json.read_text())
    data["process_wall_s"] = wall
    data["library_pages"] = library_pages
    return data


def run_diarkit_child(media: str | Path, model_dir: str | Path, out_dir: str | Path, *,
                      overlap: bool = False) -> dict[str, Any]:
    """Run diarkit on ``media`` in a fresh subprocess; the child's measurements."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(media).stem
    return _run_child(["_diarkit", "--media", str(media), "--model-dir", str(model_dir),
                       "--out-dir", str(out_dir), *(["--overlap"] if overlap else [])],
                      out_dir / f"{stem}.bench.json", out_dir / f"{stem}.log")


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                            "python": platform.python_version(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        info["ram_gib"] = kib / 2**20
    except OSError:
        pass
    try:
        import ctranslate2
        import torch
        import whisperx  # noqa: F401
        from importlib.metadata import version

        info["versions"] = {p: version(p) for p in ("torch", "ctranslate2", "faster-whisper", "whisperx",
                                                    "pyannote.audio")}
        del torch, ctranslate2
    except Exception:  # noqa: BLE001
        pass
    return info


def _fmt_minutes(m: float | str) -> str:
    if m == MANY:
        return "10 min, many voices"
    return f"{float(m):g} min"


def _references(data: dict) -> dict[str, dict]:
    """References per media key (older reports had one, on the 10-minute media)."""
    if data.get("references") is not None:
        return data["references"]
    return {"10": data["reference"]} if data.get("reference") else {}


def summarize(runs: dict[str, dict], references: dict[str, dict]) -> dict[str, Any]:
    """Derived figures and the verdict per target (issue 18's targets)."""
    s: dict[str, Any] = {"targets": [], "speedups": {}}

    def e2e(r):
        # with diarization beside transcription the stage times overlap: the wall time of
        # ``transcribe`` (decode..assign) is the end-to-end time
        return r.get("transcribe_wall_s") or sum(r["timings"][k] for k in STAGES)

    for r in runs.values():
        r["end_to_end_s"] = e2e(r)
        r["end_to_end_write_s"] = e2e(r) + r["timings"]["write"]
        r["rtf"] = r["end_to_end_s"] / r["duration"]
    ten, many, sixty = runs.get("10"), runs.get(MANY), runs.get("60")
    targets = s["targets"]
    if ten and many:
        ratio = many["timings"]["diarize"] / ten["timings"]["diarize"]
        s["diarize_many_ratio"] = ratio
        targets.append((f"diarization on many voices <= {TARGETS['diarize_many_ratio']}x the 10-min media's",
                        ratio, ratio <= TARGETS["diarize_many_ratio"],
                        f"{ratio:.2f}x ({many['timings']['diarize']:.1f} s vs {ten['timings']['diarize']:.1f} s; "
                        f"{many['num_speakers']} vs {ten['num_speakers']} speakers found)"))
    for key, run in (("10", ten), (MANY, many)):
        if not run:
            continue
        label = _fmt_minutes(key)
        targets.append((f"{label}: end-to-end RTF <= {TARGETS['rtf_10']}", run["rtf"],
                        run["rtf"] <= TARGETS["rtf_10"],
                        f"RTF {run['rtf']:.3f} ({run['rtf'] / TARGETS['rtf_10']:.2f}x the target)"))
        ref = references.get(key)
        if ref:
            ref_total = ref["decode_s"] + ref["whisperx_transcribe_s"] + ref["pyannote_diarize_s"]
            ref["back_to_back_s"] = ref_total
            speedup = ref_total / run["end_to_end_s"]
            s["speedups"][key] = speedup
            targets.append((f"{label}: >= {TARGETS['speedup_10']:g}x faster than reference back-to-back", speedup,
                            speedup >= TARGETS["speedup_10"],
                            f"{speedup:.2f}x (reference {ref_total:.1f} s vs diarkit {run['end_to_end_s']:.1f} s)"))
        mib = run["peak_rss_mib"]
        targets.append((f"{label}: peak RSS <= {TARGETS['rss_10_gb']} GB ({RSS_10_LIMIT_MIB:.0f} MiB)", mib,
                        mib <= RSS_10_LIMIT_MIB, f"{mib * 2**20 / 1e9:.2f} GB = {mib:.0f} MiB (ru_maxrss of the child)"))
    if ten and sixty:
        ratio = sixty["end_to_end_s"] / ten["end_to_end_s"]
        s["scale_60_10"] = ratio
        targets.append((f"60-min wall <= {TARGETS['scale_60_10']}x the 10-min wall", ratio,
                        ratio <= TARGETS["scale_60_10"],
                        f"{ratio:.2f}x ({sixty['end_to_end_s']:.1f} s / {ten['end_to_end_s']:.1f} s)"))
    if sixty:
        mib = sixty["peak_rss_mib"]
        targets.append((f"60-min peak RSS <= {TARGETS['rss_60_gb']} GB ({RSS_LIMIT_MIB:.0f} MiB)", mib,
                        mib <= RSS_LIMIT_MIB,
                        f"{mib * 2**20 / 1e9:.2f} GB = {mib:.0f} MiB (ru_maxrss of the child)"))
    if runs:
        first = next(iter(runs.values()))
        targets.append((f"model load <= {TARGETS['load_s']:g} s (cold, fresh process)", first["load_s"],
                        first["load_s"] <= TARGETS["load_s"],
                        f"{first['load_s']:.1f} s (import {first['import_s']:.1f} s + from_model_dir "
                        f"{first['construct_s']:.1f} s), first child"))
    return s


def render_markdown(info: dict, command: str, media: dict[str, dict], runs: dict[str, dict],
                    references: dict[str, dict], summary: dict, date: str, notes: str = "") -> str:
    lines = ["# diarkit benchmark", "",
             "<!-- generated by `python -m eval bench`; hand-written notes are at the end -->", "",
             f"- Date: {date}",
             f"- Machine: {info.get('cpu')}, {info.get('cores')} cores, "
             f"{info.get('ram_gib', float('nan')):.1f} GiB RAM, CPU only ({info.get('platform')})",
             f"- Python {info.get('python')}; " + ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items()),
             f"- Command: `{command}`",
             "- Media: AMI excerpts and simulated conversations (seed 0) interleaved and cycled to length, "
             "16 kHz mono PCM16 WAV (`eval/bench.py:build_media`). *Many voices*: 10 minutes where the "
             "10 LibriSpeech speakers, each at 3 pitch/formant shifts (30 voices), talk in blocks of 3 "
             "between 12 s AMI clips (seed 0, `eval/bench.py:build_many_voices_media`).",
             "- Each length runs in its own fresh subprocess; times are wall-clock (`time.perf_counter`), "
             "RTF = time / media duration. Model load is excluded from the stage times and end-to-end. " + (
                 "Diarization runs in a second thread beside transcription and alignment "
                 "(`--overlap-diarization`, `PipelineOptions.overlap_diarization`): its row "
                 "is its own wall time, and end-to-end is the wall time of `transcribe` (not the sum of the rows)."
                 if any(r.get("overlap_diarization") for r in runs.values()) else
                 "Stages run one after the other (end-to-end = the sum of the rows)."),
             "- Memory: **peak RSS = `ru_maxrss` of that child** (whole process, models included). Per "
             "stage: VmRSS sampled from `/proc/self/status` every 20 ms; *peak* during the stage and "
             "*growth* = peak - RSS when the stage started. Before each child the environment's shared "
             "libraries are dropped from the page cache and imported once in a throw-away process "
             "(`eval/bench.py:settle_library_pages`): otherwise the child's RSS depends on how the "
             "library files were last read (up to about 300 MiB more after a fresh `pip install`).", ""]
    if runs:
        lines += ["## diarkit per stage", "",
                  "Wall time in seconds (RTF in parentheses).", ""]
        keys = list(runs)
        head = "| stage | " + " | ".join(_fmt_minutes(k) for k in keys) + " |"
        lines += [head, "|---" * (len(keys) + 1) + "|"]
        for st in (*STAGES, "write"):
            cells = [f"{runs[k]['timings'][st]:.2f} ({runs[k]['timings'][st] / runs[k]['duration']:.4f})"
                     for k in keys]
            lines.append(f"| {STAGE_NAMES[st]} | " + " | ".join(cells) + " |")
        lines.append("| **end-to-end** (decode..assign) | " + " | ".join(
            f"**{runs[k]['end_to_end_s']:.1f} ({runs[k]['rtf']:.4f})**" for k in keys) + " |")
        lines.append("| end-to-end + writing | " + " | ".join(
            f"{runs[k]['end_to_end_write_s']:.1f} ({runs[k]['end_to_end_write_s'] / runs[k]['duration']:.4f})"
            for k in keys) + " |")
        lines.append("| model load (cold: import + from_model_dir) | " + " | ".join(
            f"{runs[k]['load_s']:.1f} ({runs[k]['import_s']:.1f} + {runs[k]['construct_s']:.1f})" for k in keys)
            + " |")
        lines.append("| child process wall (start to exit) | " + " | ".join(
            f"{runs[k]['process_wall_s']:.1f}" for k in keys) + " |")
        lines.append("| **peak RSS, MiB (ru_maxrss)** | " + " | ".join(
            f"**{runs[k]['peak_rss_mib']:.0f}**" for k in keys) + " |")
        lines.append("| speakers / words / segments | " + " | ".join(
            f"{runs[k]['num_speakers']} / {runs[k]['num_words']} / {runs[k]['num_segments']}" for k in keys) + " |")
        lines += ["", "### Memory per stage (VmRSS sampled, MiB: peak during stage / growth = peak - RSS at stage start / RSS at stage end)", "",
                  head, "|---" * (len(keys) + 1) + "|"]
        for st in ("load", *STAGES, "write"):
            cells = []
            for k in keys:
                m = runs[k]["stage_rss"].get(st)
                cells.append(f"{m['peak_mib']:.0f} / +{m['peak_mib'] - m['start_mib']:.0f} / {m['end_mib']:.0f}"
                             if m else "-")
            lines.append(f"| {STAGE_NAMES.get(st, 'model load')} | " + " | ".join(cells) + " |")
        lines.append("")
    for key, r in references.items():
        lines += [f"## Reference tools on the {_fmt_minutes(key)} media", "",
                  "Same audio, same models, one fresh subprocess, back to back (load times excluded).", "",
                  "| step | seconds | RTF |", "|---|---|---|"]
        d = r["duration"]
        for label, k in (("decode (`whisperx.load_audio`)", "decode_s"),
                         ("(1) whisperx tiny.en `transcribe(batch_size=8)`, pyannote VAD", "whisperx_transcribe_s"),
                         ("(2) pyannote.audio pipeline, own segmentation, embedding_batch_size=1",
                          "pyannote_diarize_s")):
            lines.append(f"| {label} | {r[k]:.1f} | {r[k] / d:.4f} |")
        if "back_to_back_s" in r:
            lines.append(f"| **reference back-to-back** | **{r['back_to_back_s']:.1f}** | "
                         f"**{r['back_to_back_s'] / d:.4f}** |")
        if key in runs:
            t = runs[key]
            lines.append(f"| diarkit end-to-end (decode..assign) | {t['end_to_end_s']:.1f} | {t['rtf']:.4f} |")
            lines.append(f"| **speed-up** (reference / diarkit) | "
                         f"**{summary['speedups'].get(key, float('nan')):.2f}x** | |")
        lines += ["", f"Loads (not in the comparison): whisperx {r['whisperx_load_s']:.1f} s, pyannote parts "
                  f"{r['pyannote_load_s']:.1f} s. Reference process peak RSS {r['peak_rss_mib']:.0f} MiB. "
                  f"whisperx segments {r['whisperx_segments']}, pyannote speakers {r['pyannote_speakers']}; "
                  f"segmentation batch {r['segmentation_batch_size']}, embedding batch {r['embedding_batch_size']}.",
                  ""]
    lines += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for name, _, ok, text in summary["targets"]:
        lines.append(f"| {name} | {text} | {'met' if ok else '**not met**'} |")
    lines.append("")
    lines += ["## Media", "", "| length | file | pieces | samples |", "|---|---|---|---|"]
    for k, m in media.items():
        lines.append(f"| {_fmt_minutes(k)} | `{Path(m['path']).name}` | {m['pieces']} | {m['samples']} |")
    lines.append("")
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    return "\n".join(lines)


NOTES_MARKER = "## Notes"


def _existing_notes(path: Path) -> str:
    """Hand-written notes at the end of an existing report are kept across regenerations."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    _, found, rest = text.partition(NOTES_MARKER)
    return rest.strip() if found else ""


def run_bench(minutes: list[float], out: str | Path, work: str | Path, *, model_dir: str | Path = "model",
              data_root: str | Path = "../shared/data", skip_reference: bool = False,
              many_voices: bool = True, overlap: bool = False, command: str = "") -> dict[str, Any]:
    work, out = Path(work), Path(out)
    work.mkdir(parents=True, exist_ok=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sources = source_files(data_root, work)
    media: dict[str, dict] = {}
    for m in minutes:
        key = f"{m:g}"
        media[key] = build_media(m, work / f"bench_{key}min.wav", sources)
        print(f"media {key} min: {media[key]['pieces']} pieces -> {media[key]['path']}", flush=True)
    if many_voices:
        media[MANY] = build_many_voices_media(10, work / "bench_10min_many_voices.wav", data_root)
        print(f"media 10 min, many voices: {media[MANY]['libri_voices']} LibriSpeech voices, "
              f"{media[MANY]['ami_excerpts']} AMI excerpts -> {media[MANY]['path']}", flush=True)
    info = machine_info()
    runs: dict[str, dict] = {}
    references: dict[str, dict] = {}
    lengths = sorted((k for k in media if k != MANY), key=float)
    # the 10-minute media (plain, then many voices) right after each other, the longest run last
    order = [k for k in lengths if float(k) <= 10] + ([MANY] if MANY in media else []) + \
        [k for k in lengths if float(k) > 10]
    # the 10-minute comparison first (diarkit then reference), the longest run last
    for key in order:
        print(f"diarkit on {key} min ...", flush=True)
        runs[key] = run_diarkit_child(media[key]["path"], model_dir, work / f"out_{key}min", overlap=overlap)
        r = runs[key]
        e2e = r.get("transcribe_wall_s") or sum(r["timings"][s] for s in STAGES)
        print(f"  {e2e:.1f} s (RTF {e2e / r['duration']:.3f}), load {r['load_s']:.1f} s, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB, {r['num_speakers']} speakers, {r['num_words']} words",
              flush=True)
        (work / "bench_partial.json").write_text(json.dumps({"runs": runs}, indent=2))
        if key in ("10", MANY) and not skip_reference:
            print(f"reference (whisperx + pyannote) on {_fmt_minutes(key)} ...", flush=True)
            name = "reference" if key == "10" else f"reference_{key}"
            references[key] = _run_child(["_reference", "--media", media[key]["path"], "--model-dir",
                                          str(model_dir)], work / f"{name}.bench.json", work / f"{name}.log")
            print(f"  whisperx {references[key]['whisperx_transcribe_s']:.1f} s, pyannote "
                  f"{references[key]['pyannote_diarize_s']:.1f} s", flush=True)
    summary = summarize(runs, references)
    md = render_markdown(info, command, media, runs, references, summary, date, _existing_notes(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md, encoding="utf-8")
    data = {"date": date, "command": command, "machine": info, "media": media, "runs": runs,
            "references": references, "targets": [list(t) for t in summary["targets"]]}
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(md)
    return data


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", default="1,10,60", help="media lengths in minutes (default %(default)s)")
    p.add_argument("--out", default="eval/BENCHMARK.md", help="report (default %(default)s); a .json next to it")
    p.add_argument("--work", default="eval/work/bench", help="media and outputs (default %(default)s)")
    p.add_argument("--model-dir", default="model", help="diarkit model folder (default %(default)s)")
    p.add_argument("--data", default="../shared/data", help="shared data root (default %(default)s)")
    p.add_argument("--skip-reference", action="store_true", help="do not time whisperx + pyannote")
    p.add_argument("--no-many-voices", action="store_true",
                   help="skip the 10-minute many-voices media (30 LibriSpeech voices + AMI)")
    p.add_argument("--overlap-diarization", action="store_true",
                   help="diarkit diarizes beside transcription and alignment (PipelineOptions.overlap_diarization)")
    p.add_argument("--render-only", action="store_true",
                   help="re-render --out from the .json next to it (after editing the notes); runs nothing")


def render_from_json(out: str | Path) -> str:
    """Re-render the report from its .json (measurements unchanged, notes kept)."""
    out = Path(out)
    src = out.with_suffix(".json")
    if not src.exists():
        raise BenchError(f"{src}: not found (run the benchmark first)")
    data = json.loads(src.read_text())
    runs, references = data["runs"], _references(data)
    summary = summarize(runs, references)
    md = render_markdown(data["machine"], data["command"], data["media"], runs, references, summary,
                         data["date"], _existing_notes(out))
    out.write_text(md, encoding="utf-8")
    data["targets"] = [list(t) for t in summary["targets"]]
    src.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return md


def cmd_bench(args: argparse.Namespace) -> int:
    if args.render_only:
        print(render_from_json(args.out))
        return 0
    try:
        minutes = [float(x) for x in args.minutes.split(",") if x.strip()]
    except ValueError:
        raise BenchError(f"--minutes: comma-separated numbers, not {args.minutes!r}") from None
    if not minutes or any(m <= 0 for m in minutes):
        raise BenchError("--minutes: positive numbers")
    command = "python -m eval " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run_bench(minutes, args.out, args.work, model_dir=args.model_dir, data_root=args.data,
              skip_reference=args.skip_reference, many_voices=not args.no_many_voices,
              overlap=args.overlap_diarization,
              command=command.strip())
    return 0


def _child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench")
    p.add_argument("mode", choices=["_diarkit", "_reference"])
    p.add_argument("--media", required=True)
    p.add_argument("--model-dir", default="model")
    p.add_argument("--out-dir")
    p.add_argument("--json", required=True)
    p.add_argument("--overlap", action="store_true")
    a = p.parse_args(argv)
    if a.mode == "_diarkit":
        data = child_diarkit(a.media, a.model_dir, a.out_dir or str(Path(a.json).parent), overlap=a.overlap)
    else:
        data = child_reference(a.media, a.model_dir)
    Path(a.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
