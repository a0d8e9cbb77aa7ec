"""Music and effects versions of simulated conversations (references unchanged: music is not speech).

Why: TV and film have scores, stingers and effects under and between the dialogue, and the
segmentation model calls them speech. These sets measure that offline, from a seed.

Music: General MIDI written in code with ``mido`` (a chord progression in a random key and
tempo: chords, bass, a melody line, drums on some pieces, instruments drawn from piano,
strings, pads, organ, brass, woodwinds), rendered by ``fluidsynth`` with the FluidR3_GM
soundfont (real instrument samples; Debian ``fluidsynth`` and ``fluid-soundfont-gm``).
Effects: General MIDI sound effects rendered the same way (applause, helicopter, seashore,
gunshot, breath noise), plus door slams and footsteps made in numpy (decaying low-passed
noise bursts).

Kinds (one per output folder; conversation ``i`` depends only on ``seed`` and ``i``):
- ``gaps``: ``lead`` s of music alone before the conversation and ``between`` s of music
  alone inserted in the pause nearest its middle (reference times shifted), at
  ``--gap-snr`` dB under the speech level (default U(0, 6));
- ``bed``: music under the whole conversation at U(``--snr-min``, ``--snr-max``) dB SNR
  (5-15 by default; speech level = mean power over the reference speech);
- ``effects``: an effect alone before and in the middle (as ``gaps``, 4 s each) and
  short effects (door slams, footsteps, GM effects) at random times under and between the
  turns at U(snr-min, snr-max) dB.
Each output folder gets ``<stem>.{wav,rttm,uem}``, ``groups.tsv`` (copied) and ``music.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
KINDS = ("gaps", "bed", "effects")

CHORD_PROGRAMS = [0, 4, 19, 48, 49, 50, 88, 89, 61]  # piano, e-piano, organ, strings, pads, brass
MELODY_PROGRAMS = [40, 56, 65, 71, 73, 11, 68, 0]  # violin, trumpet, sax, clarinet, flute, vibes, oboe
BASS_PROGRAMS = [32, 33, 38, 42]  # acoustic/finger/synth bass, cello
EFFECT_PROGRAMS = {"applause": 126, "helicopter": 125, "seashore": 122, "gunshot": 127, "breath": 121}
PROGRESSIONS = [[0, 7, 9, 5], [0, 5, 7, 0], [9, 5, 0, 7], [0, 9, 5, 7], [2, 7, 0, 0]]


class MusicError(ValueError):
    """Bad input or missing tools (fluidsynth, the soundfont)."""


@dataclass
class MusicConfig:
    sim: str = "eval/work/sim"
    out: str = "eval/work/music"
    kind: str = "gaps"
    seed: int = 0
    limit: int = 0
    lead: float = 8.0
    between: float = 6.0
    snr_min: float = 5.0
    snr_max: float = 15.0
    gap_snr_min: float = 0.0
    gap_snr_max: float = 6.0


def check_tools() -> None:
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        raise MusicError("fluidsynth and the FluidR3_GM soundfont are needed: apt-get install fluidsynth "
                         "fluid-soundfont-gm (make system-deps)")
    try:
        import mido  # noqa: F401
    except ImportError as exc:
        raise MusicError("the mido package is needed (pip install -r requirements.txt)") from exc


def _chord(root: int, minor: bool) -> list[int]:
    return [root, root + (3 if minor else 4), root + 7]


def music_midi(rng: np.random.Generator, seconds: float, path: Path) -> None:
    """A General-MIDI piece of at least ``seconds``: chords, bass, melody, sometimes drums."""
    import mido

    tpb = 480
    bpm = float(rng.uniform(70, 140))
    key = int(rng.integers(48, 60))
    minor_key = bool(rng.random() < 0.4)
    scale = [0, 2, 3, 5, 7, 8, 10] if minor_key else [0, 2, 4, 5, 7, 9, 11]
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    beats = int(np.ceil(seconds * bpm / 60)) + 4
    bars = beats // 4 + 1
    mid = mido.MidiFile(ticks_per_beat=tpb)
    events: list[tuple[int, mido.Message]] = []  # (absolute tick, message)

    def note(channel: int, pitch: int, start: int, length: int, velocity: int) -> None:
        events.append((start, mido.Message("note_on", channel=channel, note=int(pitch), velocity=int(velocity))))
        events.append((start + length, mido.Message("note_off", channel=channel, note=int(pitch), velocity=0)))

    programs = (CHORD_PROGRAMS[int(rng.integers(len(CHORD_PROGRAMS)))],
                MELODY_PROGRAMS[int(rng.integers(len(MELODY_PROGRAMS)))],
                BASS_PROGRAMS[int(rng.integers(len(BASS_PROGRAMS)))])
    for channel, program in enumerate(programs):
        events.append((0, mido.Message("program_change", channel=channel, program=program)))
    drums = bool(rng.random() < 0.5)
    arpeggio = bool(rng.random() < 0.5)
    for bar in range(bars):
        degree = progression[bar % len(progression)]
        root = key + degree
        minor = (degree in (2, 4, 9)) != minor_key
        start = bar * 4 * tpb
        if arpeggio:
            for b in range(8):
                pitch = _chord(root, minor)[b % 3] + 12 * (b // 3 % 2)
                note(0, pitch, start + b * tpb // 2, tpb // 2, 70)
        else:
            for pitch in _chord(root, minor):
                note(0, pitch, start, 4 * tpb - 10, 64)
        note(2, root - 12, start, 2 * tpb, 90)
        note(2, root - 12 + 7, start + 2 * tpb, 2 * tpb, 85)
        t = start
        while t < start + 4 * tpb:
            length = int(rng.choice([tpb // 2, tpb, tpb, 2 * tpb]))
            if rng.random() < 0.85:
                pitch = key + 12 + scale[int(rng.integers(7))] + 12 * int(rng.random() < 0.2)
                note(1, pitch, t, length, int(rng.integers(70, 105)))
            t += length
        if drums:
            for b in range(4):
                note(9, 36 if b % 2 == 0 else 38, start + b * tpb, tpb // 4, 90)
                note(9, 42, start + b * tpb + tpb // 2, tpb // 4, 60)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
    now = 0
    for tick, message in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        track.append(message.copy(time=tick - now))
        now = tick
    mid.tracks.append(track)
    mid.save(str(path))


def effect_midi(rng: np.random.Generator, name: str, seconds: float, path: Path) -> None:
    """One GM sound effect (program ``EFFECT_PROGRAMS[name]``) held or repeated for ``seconds``."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120)))
    track.append(mido.Message("program_change", channel=0, program=EFFECT_PROGRAMS[name]))
    ticks = int(seconds * 960)  # 960 ticks per second at 120 bpm
    if name == "gunshot":
        t = 0
        while t < ticks:
            gap = int(rng.integers(240, 960))
            track.append(mido.Message("note_on", channel=0, note=60, velocity=110, time=0 if t == 0 else gap))
            track.append(mido.Message("note_off", channel=0, note=60, velocity=0, time=120))
            t += gap + 120
    else:
        pitch = int(rng.integers(55, 66))
        track.append(mido.Message("note_on", channel=0, note=pitch, velocity=100, time=0))
        track.append(mido.Message("note_off", channel=0, note=pitch, velocity=0, time=ticks))
    mid.tracks.append(track)
    mid.save(str(path))


def render(midi: Path, seconds: float) -> np.ndarray:
    """fluidsynth -> mono float 16 kHz, cut or zero-padded to ``seconds``."""
    wav = midi.with_suffix(".wav")
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(SAMPLE_RATE), "-F", str(wav),
                    str(SOUNDFONT), str(midi)], check=True, capture_output=True, timeout=300)
    audio, sr = sf.read(str(wav), dtype="float64", always_2d=True)
    if sr != SAMPLE_RATE:
        raise MusicError(f"fluidsynth wrote {sr} Hz, expected {SAMPLE_RATE}")
    audio = audio.mean(axis=1)
    n = int(seconds * SAMPLE_RATE)
    return np.pad(audio, (0, max(0, n - len(audio))))[:n]


def make_music(rng: np.random.Generator, seconds: float, workdir: Path) -> np.ndarray:
    path = workdir / f"music{int(rng.integers(1 << 30))}.mid"
    music_midi(rng, seconds, path)
    return render(path, seconds)


def door_slam(rng: np.random.Generator) -> np.ndarray:
    """A thud (low-passed noise, fast decay) and a short rattle."""
    from scipy.signal import butter, sosfilt

    n = int(0.6 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    thud = sosfilt(butter(4, float(rng.uniform(150, 400)), fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    rattle = sosfilt(butter(2, [1500, 5000], btype="band", fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    return thud * np.exp(-t / 0.08) * 4 + rattle * np.exp(-(t - 0.05).clip(0) / 0.03) * (t > 0.05)


def footsteps(rng: np.random.Generator, seconds: float) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n)
    step = int(SAMPLE_RATE * rng.uniform(0.45, 0.65))
    sos = butter(2, [80, 2500], btype="band", fs=SAMPLE_RATE, output="sos")
    length = int(0.12 * SAMPLE_RATE)
    env = np.exp(-np.arange(length) / (0.025 * SAMPLE_RATE))
    for start in range(int(rng.integers(0, step)), n - length, step):
        out[start:start + length] += sosfilt(sos, rng.standard_normal(length)) * env * rng.uniform(0.6, 1.0)
    return out


def make_effect(rng: np.random.Generator, seconds: float, workdir: Path) -> tuple[str, np.ndarray]:
    names = ["door", "footsteps", *EFFECT_PROGRAMS]
    name = names[int(rng.integers(len(names)))]
    n = int(seconds * SAMPLE_RATE)
    if name == "door":
        slam = door_slam(rng)
        return name, np.pad(slam, (0, max(0, n - len(slam))))[:n]
    if name == "footsteps":
        return name, footsteps(rng, seconds)
    path = workdir / f"fx{int(rng.integers(1 << 30))}.mid"
    effect_midi(rng, name, seconds, path)
    return name, render(path, seconds)


def power(x: np.ndarray) -> float:
    return float(np.mean(x**2)) if x.size else 0.0


def at_level(x: np.ndarray, target_power: float, *, active_only: bool = True) -> np.ndarray:
    """``x`` scaled so that its power (over its non-silent part) is ``target_power``."""
    part = x[np.abs(x) > 1e-4] if active_only else x
    p = power(part)
    return x * np.sqrt(target_power / p) if p > 0 else x


def read_turns(rttm: Path) -> list[list]:
    return [line.split() for line in rttm.read_text(encoding="utf-8").splitlines() if line.strip()]


def speech_samples(turns: list[list], n: int) -> np.ndarray:
    active = np.zeros(n, dtype=bool)
    for t in turns:
        a = int(round(float(t[3]) * SAMPLE_RATE))
        active[a:a + int(round(float(t[4]) * SAMPLE_RATE))] = True
    return active


def middle_pause(turns: list[list], duration: float) -> float:
    """Middle of the reference pause nearest the middle of the file (or the middle itself)."""
    spans = sorted((float(t[3]), float(t[3]) + float(t[4])) for t in turns)
    pauses, end = [], 0.0
    for a, b in spans:
        if a > end:
            pauses.append((end + a) / 2)
        end = max(end, b)
    inner = [p for p in pauses if spans and spans[0][0] < p < end]
    return min(inner, key=lambda p: abs(p - duration / 2)) if inner else duration / 2


def shifted(turns: list[list], uri: str, at: float, by: float, lead: float) -> list[str]:
    lines = []
    for t in turns:
        start = float(t[3]) + lead + (by if float(t[3]) >= at else 0.0)
        lines.append(" ".join([t[0], uri, t[2], f"{start:.3f}", *t[4:]]))
    return lines


def build(cfg: MusicConfig, wav: Path, i: int, workdir: Path) -> tuple[np.ndarray, list[str], dict]:
    """Conversation ``i`` of the set: (audio, RTTM lines, what was added)."""
    rng = np.random.default_rng([cfg.seed, KINDS.index(cfg.kind), i])
    speech, sr = sf.read(str(wav), dtype="float64")
    if sr != SAMPLE_RATE:
        raise MusicError(f"{wav}: {sr} Hz, expected {SAMPLE_RATE} (a folder made by python -m eval simulate)")
    uri = wav.stem
    turns = read_turns(wav.with_suffix(".rttm"))
    duration = len(speech) / SAMPLE_RATE
    speech_power = power(speech[speech_samples(turns, len(speech))])
    info: dict = {"uri": uri, "kind": cfg.kind}
    if cfg.kind == "bed":
        snr = float(rng.uniform(cfg.snr_min, cfg.snr_max))
        music = at_level(make_music(rng, duration, workdir), speech_power / 10 ** (snr / 10), active_only=False)
        info["snr_db"] = round(snr, 2)
        return speech + music, shifted(turns, uri, 0, 0, 0), info

    lead = cfg.lead if cfg.kind == "gaps" else 4.0
    between = cfg.between if cfg.kind == "gaps" else 4.0
    at = middle_pause(turns, duration)
    cut = int(round(at * SAMPLE_RATE))
    n_lead, n_between = int(lead * SAMPLE_RATE), int(between * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(n_lead), speech[:cut], np.zeros(n_between), speech[cut:]])
    inserts = []
    for start, n in ((0, n_lead), (n_lead + cut, n_between)):
        snr = float(rng.uniform(cfg.gap_snr_min, cfg.gap_snr_max))
        if cfg.kind == "gaps":
            name, sound = "music", make_music(rng, n / SAMPLE_RATE, workdir)
        else:
            name, sound = make_effect(rng, n / SAMPLE_RATE, workdir)
        fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.05 * SAMPLE_RATE))
        audio[start:start + n] += at_level(sound, speech_power / 10 ** (snr / 10)) * fade
        inserts.append({"what": name, "start": round(start / SAMPLE_RATE, 3), "seconds": n / SAMPLE_RATE,
                        "snr_db": round(snr, 2)})
    if cfg.kind == "effects":
        for _ in range(int(rng.integers(3, 7))):
            name, sound = make_effect(rng, float(rng.uniform(0.6, 2.5)), workdir)
            start = int(rng.integers(0, len(audio) - len(sound)))
            snr = float(rng.uniform(cfg.snr_min, cfg.snr_max))
            audio[start:start + len(sound)] += at_level(sound, speech_power / 10 ** (snr / 10))
            inserts.append({"what": name, "start": round(start / SAMPLE_RATE, 3),
                            "seconds": round(len(sound) / SAMPLE_RATE, 3), "snr_db": round(snr, 2)})
    info["inserted"] = inserts
    return audio, shifted(turns, uri, at, between, lead), info


def make_set(cfg: MusicConfig) -> list[dict]:
    """Write the ``cfg.kind`` version of every conversation of ``cfg.sim`` into ``cfg.out``."""
    if cfg.kind not in KINDS:
        raise MusicError(f"unknown kind {cfg.kind!r}: use one of {', '.join(KINDS)}")
    check_tools()
    sim, out = Path(cfg.sim), Path(cfg.out)
    wavs = sorted(w for w in sim.glob("*.wav") if w.with_suffix(".rttm").is_file())
    if not wavs:
        raise MusicError(f"{sim}: no <stem>.wav with a <stem>.rttm (make one with python -m eval simulate)")
    wavs = wavs[: cfg.limit or None]
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    with tempfile.TemporaryDirectory(prefix="music-") as tmp:
        for i, wav in enumerate(wavs):
            audio, rttm, info = build(cfg, wav, i, Path(tmp))
            peak = float(np.abs(audio).max())
            if peak > 0.99:
                audio = audio * (0.99 / peak)
            sf.write(str(out / f"{wav.stem}.wav"), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            (out / f"{wav.stem}.rttm").write_text("\n".join(rttm) + "\n", encoding="utf-8")
            (out / f"{wav.stem}.uem").write_text(f"{wav.stem} 1 0.000 {len(audio) / SAMPLE_RATE:.3f}\n",
                                                 encoding="utf-8")
            info["duration"] = round(len(audio) / SAMPLE_RATE, 3)
            manifest.append(info)
            log.info("%s: %s", wav.stem, info)
    if (sim / "groups.tsv").is_file():
        stems = {w.stem for w in wavs}
        lines = [ln for ln in (sim / "groups.tsv").read_text(encoding="utf-8").splitlines()
                 if ln.split() and ln.split()[0] in stems]
        (out / "groups.tsv").write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    config = {k: v for k, v in asdict(cfg).items() if k != "out"}
    (out / "music.json").write_text(json.dumps({"config": config, "files": manifest}, indent=2) + "\n",
                                    encoding="utf-8")
    return manifest


def drop_wordless_turns(hyp_dir: str | Path, out_dir: str | Path) -> dict[str, tuple[int, int]]:
    """The "turns with no words" lever, measured after the fact: from diarkit JSON hypotheses,
    write RTTMs that keep only the turns overlapping at least one transcribed word.

    Returns {uri: (turns kept, turns in)}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path in sorted(Path(hyp_dir).glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        words = [(w["start"], w["end"]) for s in doc.get("segments", []) for w in s.get("words", [])
                 if w.get("start") is not None and w.get("end") is not None]
        turns = doc.get("diarization", [])
        kept = [t for t in turns if any(a < t["end"] and b > t["start"] for a, b in words)]
        lines = [f"SPEAKER {path.stem} 1 {t['start']:.3f} {t['end'] - t['start']:.3f} <NA> <NA> {t['speaker']} "
                 f"<NA> <NA>" for t in kept]
        (out / f"{path.stem}.rttm").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        counts[path.stem] = (len(kept), len(turns))
    return counts


if __name__ == "__main__":  # python -m eval.music drop-wordless HYP_DIR OUT_DIR
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "drop-wordless":
        sys.exit("usage: python -m eval.music drop-wordless HYP_DIR OUT_DIR")
    for uri, (kept, total) in drop_wordless_turns(sys.argv[2], sys.argv[3]).items():
        print(f"{uri}: kept {kept} of {total} turns")
