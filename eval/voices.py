"""``python -m eval voices``: a simulated series, named from a voice library.

Why: the voice library must name recurring voices in new recordings and leave strangers
alone; a simulated series has exact answers for both.

How (deterministic for ``--fold`` and ``--seed``):
- the LibriSpeech speakers (sorted) are split into two disjoint folds, ``dev`` (even
  positions) and ``test`` (odd positions), so the threshold is chosen on voices the test
  never hears. In a fold the first ``--enrolled`` speakers are enrolled, the others never are;
- each enrolled voice is enrolled the way ``diarkit voices add`` does it, from its first
  ``--enroll-utterances`` utterances (sorted by name); episodes are built by
  ``eval.simulate.build_conversation`` from the *other* utterances of the fold's speakers
  (never-enrolled speakers: all of theirs), 3-4 speakers and ``--turns`` turns each;
- every episode goes through the pipeline once without the library, then the pipeline's own
  naming step (``pipeline.voices``, what ``--voices`` runs) scores its speakers against the
  library: that gives the named result at the shipped threshold and, from the same scores,
  the naming at every threshold of the sweep.

Scored (collar 0, overlap scored, 1 ms frames):
- enrolled speech named correctly: reference speech time of enrolled voices during which a
  hypothesis speaker carrying that voice's name is active;
- never-enrolled speakers named: the never-enrolled speaker appearances (speaker x episode)
  whose speech is mostly covered by a hypothesis speaker with a name (also as speech time);
- DER without the library (optimal one-to-one mapping) and DER with names as labels: a named
  hypothesis speaker counts only as the voice of that name; unnamed ones are mapped
  optimally onto the reference speakers no name claimed.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from .simulate import SAMPLE_RATE, SimConfig, build_conversation, index_utterances, rttm_lines

log = logging.getLogger(__name__)

FRAME = 0.001  # scoring frames, seconds (the references are on a 1 ms grid)
SWEEP = tuple(round(t, 2) for t in np.arange(0.60, 0.951, 0.01))


class VoicesEvalError(ValueError):
    """Bad input for the voices evaluation (missing data, impossible split)."""


@dataclass
class EpisodeScore:
    uri: str
    duration: float
    speakers: list[str]
    enrolled_speech: float = 0.0  # reference seconds of enrolled voices
    enrolled_named: float = 0.0  # of those, seconds carrying the right name
    enrolled_wrong: float = 0.0  # seconds carrying another voice's name
    enrolled_ceiling: float = 0.0  # seconds its optimally mapped hypothesis speaker covers (naming's best)
    enrolled_missed: float = 0.0  # seconds no hypothesis speaker covers (lost before any naming)
    enrolled_lost_in_overlap: float = 0.0  # of the seconds not named right, those where the reference overlaps
    strangers: int = 0  # never-enrolled speaker appearances
    strangers_named: int = 0
    stranger_speech: float = 0.0
    stranger_named_speech: float = 0.0
    der_plain: float = 0.0  # error seconds
    der_named: float = 0.0
    total: float = 0.0  # reference speech seconds (overlap counted per speaker)
    names: dict[str, str] = field(default_factory=dict)  # hypothesis label -> name


def _activity(turns: list[tuple[float, float, str]], labels: list[str], frames: int) -> np.ndarray:
    act = np.zeros((len(labels), frames), dtype=bool)
    index = {label: i for i, label in enumerate(labels)}
    for start, end, label in turns:
        a, b = int(round(start / FRAME)), min(frames, int(round(end / FRAME)))
        if b > a:
            act[index[label], a:b] = True
    return act


def der_seconds(ref: np.ndarray, hyp: np.ndarray, mapping: dict[int, int]) -> float:
    """(miss + false alarm + confusion) seconds for a fixed hypothesis -> reference mapping."""
    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    correct = np.zeros(ref.shape[1], dtype=np.int32)
    for h, r in mapping.items():
        correct += hyp[h] & ref[r]
    errors = np.maximum(n_ref, n_hyp) - correct  # md-eval: miss + FA + confusion per frame
    return float(errors.sum()) * FRAME


def optimal_mapping(ref: np.ndarray, hyp: np.ndarray, hyp_rows: list[int], ref_rows: list[int]) -> dict[int, int]:
    if not hyp_rows or not ref_rows:
        return {}
    overlap = np.array([[float(np.count_nonzero(hyp[h] & ref[r])) for r in ref_rows] for h in hyp_rows])
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    return {hyp_rows[i]: ref_rows[j] for i, j in zip(rows, cols) if overlap[i, j] > 0}


def score_episode(uri: str, duration: float, ref_turns, hyp_turns, names: dict[str, str],
                  enrolled: set[str]) -> EpisodeScore:
    """``names``: hypothesis label -> voice name (voices are named by reference speaker id)."""
    frames = int(round(duration / FRAME)) + 1
    ref_labels = sorted({t[2] for t in ref_turns})
    hyp_labels = sorted({t[2] for t in hyp_turns})
    ref = _activity(ref_turns, ref_labels, frames)
    hyp = _activity(hyp_turns, hyp_labels, frames)
    out = EpisodeScore(uri=uri, duration=duration, speakers=ref_labels, names=dict(names),
                       total=float(ref.sum()) * FRAME)
    plain = optimal_mapping(ref, hyp, list(range(len(hyp_labels))), list(range(len(ref_labels))))
    out.der_plain = der_seconds(ref, hyp, plain)
    # names as labels: a named speaker is that voice (or nobody here); the others map optimally
    fixed = {hyp_labels.index(h): ref_labels.index(n) for h, n in names.items() if n in ref_labels}
    free_hyp = [i for i, h in enumerate(hyp_labels) if h not in names]
    free_ref = [j for j in range(len(ref_labels)) if j not in fixed.values()]
    out.der_named = der_seconds(ref, hyp, {**fixed, **optimal_mapping(ref, hyp, free_hyp, free_ref)})
    named_rows = {n: hyp_labels.index(h) for h, n in names.items()}
    any_named = np.zeros(frames, dtype=bool)
    for row in named_rows.values():
        any_named |= hyp[row]
    any_hyp = hyp.any(axis=0)
    ref_overlap = ref.sum(axis=0) > 1
    for j, speaker in enumerate(ref_labels):
        speech = ref[j]
        seconds = float(speech.sum()) * FRAME
        if speaker in enrolled:
            out.enrolled_speech += seconds
            right = hyp[named_rows[speaker]] & speech if speaker in named_rows else np.zeros_like(speech)
            out.enrolled_named += float(right.sum()) * FRAME
            mapped = [h for h, r in plain.items() if r == j]
            if mapped:
                out.enrolled_ceiling += float((hyp[mapped[0]] & speech).sum()) * FRAME
            wrong = np.zeros_like(speech)
            for name, row in named_rows.items():
                if name != speaker:  # another voice's name, where that voice is not speaking
                    wrong |= hyp[row] & (~ref[ref_labels.index(name)] if name in ref_labels else True)
            out.enrolled_wrong += float((speech & wrong & ~right).sum()) * FRAME
            out.enrolled_missed += float((speech & ~any_hyp).sum()) * FRAME
            out.enrolled_lost_in_overlap += float((speech & ~right & ref_overlap).sum()) * FRAME
        else:
            out.strangers += 1
            out.stranger_speech += seconds
            named_time = float((speech & any_named).sum()) * FRAME
            out.stranger_named_speech += named_time
            # named: the hypothesis speaker covering most of its speech carries a name
            cover = [float((hyp[i] & speech).sum()) for i in range(len(hyp_labels))]
            if cover and max(cover) > 0 and hyp_labels[int(np.argmax(cover))] in names:
                out.strangers_named += 1
    return out


def totals(scores: list[EpisodeScore]) -> dict[str, float]:
    s = lambda name: sum(getattr(e, name) for e in scores)  # noqa: E731
    ratio = lambda a, b: a / b if b else 0.0  # noqa: E731
    return {
        "enrolled_named": ratio(s("enrolled_named"), s("enrolled_speech")),
        "enrolled_wrong": ratio(s("enrolled_wrong"), s("enrolled_speech")),
        "enrolled_ceiling": ratio(s("enrolled_ceiling"), s("enrolled_speech")),
        "enrolled_missed": ratio(s("enrolled_missed"), s("enrolled_speech")),
        "enrolled_lost_in_overlap": ratio(s("enrolled_lost_in_overlap"), s("enrolled_speech")),
        "strangers_named": ratio(s("strangers_named"), s("strangers")),
        "stranger_speech_named": ratio(s("stranger_named_speech"), s("stranger_speech")),
        "der_plain": ratio(s("der_plain"), s("total")),
        "der_named": ratio(s("der_named"), s("total")),
        "strangers": s("strangers"),
        "episodes": len(scores),
    }


# --------------------------------------------------------------------------- running


def fold_speakers(index: dict[str, list[Path]], fold: str, enrolled: int) -> tuple[list[str], list[str]]:
    names = sorted(index)
    chosen = names[0::2] if fold == "dev" else names[1::2]
    if len(chosen) <= enrolled or enrolled < 1:
        raise VoicesEvalError(f"fold {fold} has {len(chosen)} speakers: cannot enroll {enrolled} and keep strangers")
    return chosen[:enrolled], chosen[enrolled:]


def run_voices(*, data: str, out: str, fold: str = "dev", num_episodes: int = 8, enrolled: int = 3,
               enroll_utterances: int = 3, turns: int = 10, seed: int | None = None,
               model_dir: str = "model", device: str = "cpu") -> dict:
    from diarkit import audio as audio_io
    from diarkit.pipeline import DiarkitPipeline
    from diarkit.voices.command import _save
    from diarkit.voices.library import LocalStore, load_library
    from diarkit.voices.match import THRESHOLD
    from diarkit.voices.speech import clip_speech, pooled_embedding

    import soundfile as sf

    index = index_utterances(Path(data))
    known, strangers = fold_speakers(index, fold, enrolled)
    seed = ({"dev": 0, "test": 1}[fold] if seed is None else seed)
    out_dir = Path(out)
    (out_dir / "episodes").mkdir(parents=True, exist_ok=True)
    (out_dir / "hyp").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pipeline = DiarkitPipeline.from_model_dir(model_dir, device=device)

    # the library, as `diarkit voices add` makes it (same functions), voices named ls<speaker>
    library_dir = out_dir / "library"
    store = LocalStore(str(library_dir))
    for old in library_dir.glob("*.voice.json"):
        old.unlink()
    for speaker in known:
        additions = []
        for clip in index[speaker][:enroll_utterances]:
            speech = clip_speech(pipeline.segmenter, audio_io.decode(clip))
            embedding = pooled_embedding(pipeline.encoder, speech)
            if embedding is not None:
                additions.append((embedding, {"kind": "clip", "source": clip.name,
                                              "seconds": round(len(speech) / SAMPLE_RATE, 3)}))
        _save(store, f"ls{speaker}", pipeline.voices.model, additions, replace=True)
    library = load_library(str(library_dir), pipeline.voices.model)

    episode_index = {s: (index[s][enroll_utterances:] if s in known else index[s]) for s in known + strangers}
    cfg = SimConfig(data=data, num_files=num_episodes, min_speakers=3, max_speakers=min(4, len(episode_index)),
                    turns=turns, seed=seed, prefix=f"{fold}-ep")
    enrolled_names = {f"ls{s}" for s in known}
    records, cache = [], {}
    for i in range(num_episodes):
        conv = build_conversation(cfg, episode_index, i, cache)
        wav = out_dir / "episodes" / f"{conv.uri}.wav"
        sf.write(str(wav), conv.audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        ref_lines = rttm_lines(conv)
        (out_dir / "episodes" / f"{conv.uri}.rttm").write_text("\n".join(ref_lines) + "\n", encoding="utf-8")
        ref_turns = []
        for line in ref_lines:
            parts = line.split()
            start, length = float(parts[3]), float(parts[4])
            ref_turns.append((start, start + length, f"ls{parts[7]}"))
        plain = pipeline.transcribe(wav)
        named = copy.deepcopy(plain)
        samples = audio_io.decode(wav)
        scores = pipeline.voices(named, samples, str(library_dir))  # what --voices runs
        for name, result in (("plain", plain), ("named", named)):
            (out_dir / "hyp" / f"{conv.uri}.{name}.json").write_text(
                json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
        hyp_turns = [(t.start, t.end, t.speaker) for t in plain.turns]
        records.append({"uri": conv.uri, "duration": conv.num_samples / SAMPLE_RATE, "ref": ref_turns,
                        "hyp": hyp_turns, "speakers": scores.speakers, "voices": scores.voices,
                        "scores": np.where(np.isnan(scores.scores), None, np.round(scores.scores, 4)).tolist(),
                        "seconds": scores.seconds})
        log.info("%s: %d reference speakers, %d found, named %s", conv.uri, len(conv.speakers),
                 len(plain.speakers), scores.assign(THRESHOLD))
    (out_dir / "scores.json").write_text(json.dumps({
        "fold": fold, "seed": seed, "enrolled": [f"ls{s}" for s in known],
        "never_enrolled": [f"ls{s}" for s in strangers], "enroll_utterances": enroll_utterances,
        "library": [{"name": v.name, "seconds": round(v.seconds, 2)} for v in library.voices],
        "episodes": records}, indent=1) + "\n", encoding="utf-8")
    report = evaluate(out_dir / "scores.json", out_dir, threshold=THRESHOLD)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


def _scores_object(record: dict):
    from diarkit.voices.match import SpeakerScores

    matrix = np.array([[np.nan if v is None else v for v in row] for row in record["scores"]], dtype=np.float32)
    return SpeakerScores(speakers=record["speakers"], voices=record["voices"],
                         scores=matrix.reshape(len(record["speakers"]), len(record["voices"])),
                         seconds=record["seconds"])


def evaluate(scores_path: Path, out_dir: Path, *, threshold: float) -> dict:
    """Per-episode table at ``threshold`` and the threshold sweep, from saved scores (no model)."""
    data = json.loads(Path(scores_path).read_text("utf-8"))
    enrolled = set(data["enrolled"])

    def at(t: float) -> list[EpisodeScore]:
        return [score_episode(r["uri"], r["duration"], [tuple(x) for x in r["ref"]], [tuple(x) for x in r["hyp"]],
                              _scores_object(r).assign(t), enrolled) for r in data["episodes"]]

    episodes = at(threshold)
    overall = totals(episodes)
    sweep = [{"threshold": t, **totals(at(t))} for t in SWEEP]
    genuine, impostor = [], []
    for r in data["episodes"]:
        sc = _scores_object(r)
        ref_labels = sorted({x[2] for x in r["ref"]})
        for i, speaker in enumerate(sc.speakers):
            # the reference speaker this hypothesis speaker mostly is
            cover = {}
            for start, end, label in r["hyp"]:
                if label != speaker:
                    continue
                for rs, re_, rl in r["ref"]:
                    cover[rl] = cover.get(rl, 0.0) + max(0.0, min(end, re_) - max(start, rs))
            truth = max(cover, key=cover.get) if cover else None
            for j, voice in enumerate(sc.voices):
                if np.isnan(sc.scores[i, j]):
                    continue
                (genuine if voice == truth else impostor).append(float(sc.scores[i, j]))
        del ref_labels
    report = {"fold": data["fold"], "threshold": threshold, "overall": overall,
              "episodes": [vars(e) for e in episodes], "sweep": sweep,
              "trials": {"genuine": sorted(genuine), "impostor": sorted(impostor)},
              "enrolled": data["enrolled"], "never_enrolled": data["never_enrolled"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    try:
        plot_sweep(report, out_dir / "threshold_curve.png")
    except Exception as exc:  # noqa: BLE001 - the tables are the record; a plot failure is only logged
        log.warning("no plot: %s", exc)
    return report


TARGETS = (("enrolled_named", ">=", 0.95, "enrolled speakers' speech named correctly"),
           ("strangers_named", "<=", 0.05, "never-enrolled speakers named"))


def verdicts(overall: dict) -> list[tuple[str, bool, str]]:
    out = []
    for key, op, bound, text in TARGETS:
        value = overall[key]
        ok = value >= bound if op == ">=" else value <= bound
        out.append((text, ok, f"{100 * value:.1f}% (target {op} {100 * bound:.0f}%)"))
    ok = overall["der_named"] <= overall["der_plain"] + 1e-9
    out.append(("DER with names as labels no worse than without the library", ok,
                f"{100 * overall['der_named']:.2f}% vs {100 * overall['der_plain']:.2f}%"))
    return out


def markdown(report: dict) -> str:
    o = report["overall"]
    lines = [f"# Voice library: fold {report['fold']}, threshold {report['threshold']:.2f}", "",
             f"Enrolled voices: {', '.join(report['enrolled'])}; never enrolled: "
             f"{', '.join(report['never_enrolled'])}.", "",
             "Enrolled named: share of enrolled voices' speech carrying the right name; ceiling: the share "
             "their optimally mapped diarization speaker covers (what perfect naming of this diarization "
             "would reach); missed: the share no diarization speaker covers (lost before naming).", "",
             "| episode | dur (s) | speakers | enrolled named | ceiling | wrong name | missed | strangers named "
             "| DER plain | DER names |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    pct = lambda a, b: f"{100 * a / b:.1f}%" if b else "-"  # noqa: E731
    for e in report["episodes"]:
        lines.append(f"| {e['uri']} | {e['duration']:.1f} | {' '.join(e['speakers'])} | "
                     f"{pct(e['enrolled_named'], e['enrolled_speech'])} | {pct(e['enrolled_ceiling'], e['enrolled_speech'])} | "
                     f"{pct(e['enrolled_wrong'], e['enrolled_speech'])} | "
                     f"{pct(e['enrolled_missed'], e['enrolled_speech'])} | "
                     f"{e['strangers_named']}/{e['strangers']} | {pct(e['der_plain'], e['total'])} | "
                     f"{pct(e['der_named'], e['total'])} |")
    lines.append(f"| **overall** | | | **{100 * o['enrolled_named']:.1f}%** | {100 * o['enrolled_ceiling']:.1f}% | "
                 f"{100 * o['enrolled_wrong']:.1f}% | {100 * o['enrolled_missed']:.1f}% | "
                 f"**{100 * o['strangers_named']:.1f}%** ({100 * o['stranger_speech_named']:.1f}% of their speech) | "
                 f"{100 * o['der_plain']:.2f}% | **{100 * o['der_named']:.2f}%** |")
    lost = 1.0 - o["enrolled_named"]
    unnamed = max(0.0, lost - o["enrolled_missed"] - o["enrolled_wrong"])
    lines += ["", f"Where the enrolled speech not named right goes ({100 * lost:.1f}% of the enrolled speech): "
                  f"no diarization speaker {100 * o['enrolled_missed']:.1f}%, another voice's name {100 * o['enrolled_wrong']:.1f}%, "
                  f"an unnamed speaker (or another voice's name while that voice speaks too) "
                  f"{100 * unnamed:.1f}%; {100 * o['enrolled_lost_in_overlap']:.1f}% is where the reference has "
                  f"two speakers at once."]
    lines += ["", "Targets:", ""]
    for text, ok, value in verdicts(o):
        lines.append(f"- {'MET' if ok else 'NOT MET'}: {text}: {value}")
    g, imp = report["trials"]["genuine"], report["trials"]["impostor"]
    lines += ["", f"Score trials (pooled speaker embedding vs voice centroid): {len(g)} genuine "
                  f"(min {min(g, default=float('nan')):.3f}, median {np.median(g) if g else float('nan'):.3f}), "
                  f"{len(imp)} impostor (max {max(imp, default=float('nan')):.3f}, "
                  f"median {np.median(imp) if imp else float('nan'):.3f}).", "",
              "Threshold sweep (the same scores, named at each threshold):", "",
              "| threshold | enrolled named | wrong name | strangers named | stranger speech named | DER names |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in report["sweep"]:
        lines.append(f"| {row['threshold']:.2f} | {100 * row['enrolled_named']:.1f}% | "
                     f"{100 * row['enrolled_wrong']:.1f}% | {100 * row['strangers_named']:.1f}% | "
                     f"{100 * row['stranger_speech_named']:.1f}% | {100 * row['der_named']:.2f}% |")
    return "\n".join(lines) + "\n"


def plot_sweep(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["threshold"] for r in report["sweep"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(t, [100 * r["enrolled_named"] for r in report["sweep"]], label="enrolled speech named correctly")
    left.plot(t, [100 * r["strangers_named"] for r in report["sweep"]], label="never-enrolled speakers named")
    left.plot(t, [100 * r["enrolled_wrong"] for r in report["sweep"]], label="enrolled speech with a wrong name")
    left.axvline(report["threshold"], color="grey", linestyle="--", label=f"shipped {report['threshold']:.2f}")
    left.set_xlabel("cosine threshold")
    left.set_ylabel("%")
    left.legend(fontsize=8)
    left.set_title(f"naming vs threshold ({report['fold']})")
    bins = np.linspace(0, 1, 51)
    right.hist(report["trials"]["genuine"], bins=bins, alpha=0.6, label="same voice")
    right.hist(report["trials"]["impostor"], bins=bins, alpha=0.6, label="other voice")
    right.axvline(report["threshold"], color="grey", linestyle="--")
    right.set_xlabel("cosine: speaker vs voice centroid")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
