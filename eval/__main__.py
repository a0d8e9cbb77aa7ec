"""``python -m eval {score,run,simulate,music,bench,floor,subtitles,voices}``: command line of the evaluation tools.

Exit codes: 0 ok, 1 some files failed in ``run``, 2 bad input (malformed file, missing data).
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import readers
from .readers import ReaderError

log = logging.getLogger("eval")

COLLAR_HELP = ("collar in seconds, pyannote convention: TOTAL width removed around each reference "
               "boundary (0.5 == md-eval -c 0.25). Default %(default)s")


def _add_scoring_options(p: argparse.ArgumentParser, *, uem_help: str) -> None:
    p.add_argument("--collar", type=float, default=0.0, help=COLLAR_HELP)
    p.add_argument("--skip-overlap", action="store_true", help="do not score overlapping speech")
    p.add_argument("--uem", metavar="FILE", help=uem_help)
    p.add_argument("--groups", metavar="FILE",
                   help="two columns (file id, group name; tab, comma or whitespace): adds per-group rows")
    p.add_argument("--tcp-collar", type=float, default=5.0, help="tcpWER collar in seconds (default %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser(
        "score", help="score hypothesis annotations against references",
        description="Score diarization (DER parts, JER, purity, coverage) and, when the reference has words "
                    "(STM, text-per-speaker .txt, CSV text column), WER/cpWER/tcpWER. PATH is a file or a "
                    "folder; files are matched by file id (file stem, or the uri inside RTTM/STM). Formats: "
                    ".rttm .stm .json (diarkit or whisperx) .csv .tsv .txt (speaker<TAB>text); *.uem in a "
                    "reference folder are used as scored regions. Without any UEM the union of reference "
                    "and hypothesis extents is scored (pyannote default, warned).")
    score.add_argument("--ref", required=True, metavar="PATH", help="reference file or folder")
    score.add_argument("--hyp", required=True, metavar="PATH", help="hypothesis file or folder")
    score.add_argument("--out", metavar="DIR", help="write report.{md,csv,json} and PNG plots here")
    _add_scoring_options(score, uem_help="UEM file (uri channel start end); overrides .uem files in --ref")

    run = sub.add_parser(
        "run", help="run diarkit on a dataset folder and score it",
        description="Transcribe every media file of DATASET that has a same-stem .rttm next to it (.stm "
                    "optional), write DIR/hyp/<stem>.{json,rttm}, then score into DIR with runtime "
                    "(per-stage timings, real-time factor, process peak RSS). Scoring defaults: collar 0, "
                    "overlap scored.")
    run.add_argument("dataset", metavar="DATASET")
    run.add_argument("--out", required=True, metavar="DIR")
    run.add_argument("--model-dir", default="model", help="diarkit model folder (default %(default)s)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--num-speakers", type=int)
    run.add_argument("--min-speakers", type=int)
    run.add_argument("--max-speakers", type=int)
    run.add_argument("--language")
    run.add_argument("--limit", type=int, help="only the first N files (sorted by name)")
    run.add_argument("--word-speakers", choices=["exclusive", "overlap"],
                     help="words take their speaker from the exclusive diarization or the overlapping turns "
                          "(default: the pipeline's, exclusive)")
    run.add_argument("--uem-from-duration", action=argparse.BooleanOptionalAction, default=True,
                     help="score 0..duration of each file that has no .uem (default on; off = union of "
                          "reference and hypothesis extents)")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="settings",
                     help="a PipelineOptions field for this run, e.g. speech_gate=none, speech_gate.onset=0.6, "
                          "diarization.segmentation_threshold=0.5 (repeatable)")
    _add_scoring_options(run, uem_help="UEM file overriding DATASET/*.uem and --uem-from-duration")

    sim = sub.add_parser(
        "simulate", help="build multi-speaker conversations with exact references",
        description="Concatenate single-speaker utterances (LibriSpeech layout <speaker>/*.flac) into "
                    "conversations with pauses and controlled overlap; writes 16 kHz mono WAV + RTTM + UEM "
                    "per conversation, groups.tsv (file -> <k>spk) and simulate.json. Same seed, same bytes.")
    sim.add_argument("--data", default="../shared/data/librispeech-test-other",
                     help="source utterances (default %(default)s, relative to the current directory)")
    sim.add_argument("--out", required=True, metavar="DIR")
    sim.add_argument("--num-files", type=int, default=10)
    sim.add_argument("--min-speakers", type=int, default=2)
    sim.add_argument("--max-speakers", type=int, default=4)
    sim.add_argument("--turns", type=int, default=12, help="turns per conversation (at least one per speaker)")
    sim.add_argument("--pause-mean", type=float, default=0.6, help="mean pause in s (exponential)")
    sim.add_argument("--overlap-ratio", type=float, default=0.05,
                     help="target overlapped time / speech time (default %(default)s)")
    sim.add_argument("--overlap-min", type=float, default=0.3, help="shortest overlap in s")
    sim.add_argument("--overlap-max", type=float, default=2.0, help="longest overlap in s")
    sim.add_argument("--max-turn", type=float, default=0.0, help="cut utterances to this many s (0 = whole)")
    sim.add_argument("--trim-db", type=float, default=40.0,
                     help="trim leading/trailing audio this many dB below the loudest frame (0 = no trim)")
    sim.add_argument("--split-pauses", type=float, default=0.8,
                     help="pauses inside an utterance at least this long (s) are left out of the RTTM; 0.8 s follows the human AMI references, where 95%% of same-speaker gaps are >= 0.84 s "
                          "(0 = one RTTM line per utterance; default %(default)s)")
    sim.add_argument("--pause-db", type=float, default=30.0,
                     help="a pause is this many dB below the utterance's loudest frame (default %(default)s)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--prefix", default="sim", help="file name prefix (default %(default)s)")
    music = sub.add_parser(
        "music", help="music and effects versions of simulated conversations (references unchanged)",
        description="Add General-MIDI music (written with mido, rendered by fluidsynth with FluidR3_GM) or "
                    "sound effects to the conversations of SIM (a python -m eval simulate folder): kind gaps = "
                    "music alone before and in the middle, bed = music under everything at 5-15 dB SNR, "
                    "effects = effects alone and under the speech. Same seed, same audio.")
    music.add_argument("sim", metavar="SIM")
    music.add_argument("--out", required=True, metavar="DIR")
    music.add_argument("--kind", choices=["gaps", "bed", "effects"], default="gaps")
    music.add_argument("--seed", type=int, default=0)
    music.add_argument("--limit", type=int, default=0, help="only the first N conversations")
    music.add_argument("--snr-min", type=float, default=5.0, help="dB, music/effects under speech")
    music.add_argument("--snr-max", type=float, default=15.0)
    bench = sub.add_parser(
        "bench", help="speed and memory benchmark on 1/10/60-minute media, against whisperx + pyannote",
        description="Build test media (AMI excerpts + simulated conversations, cycled to length), run diarkit on "
                    "each in a fresh subprocess (per-stage wall time, RTF, peak RSS, cold model load), time the "
                    "reference tools (whisperx tiny.en + straightforward pyannote.audio) on the 10-minute media, "
                    "and write a Markdown report (plus .json) with the targets verdict.")
    from .bench import add_arguments as _bench_arguments

    _bench_arguments(bench)
    floor = sub.add_parser(
        "floor", help="DER with oracle clustering: what segmentation alone costs",
        description="Run diarkit's segmentation on DATASET (media with same-stem .rttm) and score three "
                    "diarizations per segmentation threshold: diarkit's clustering, pyannote's oracle "
                    "clustering (true speaker of every local track), and oracle clustering with the reference "
                    "speaker count per frame. No clustering can go below the oracle row.")
    from .floor import add_arguments as _floor_arguments

    _floor_arguments(floor)
    subs = sub.add_parser(
        "subtitles", help="write SRT/VTT/TTML from diarkit JSON and check them against the subtitle rules",
        description="Exit 1 unless every file passes diarkit's subtitle checker except reading speed that "
                    "the JSON warnings list (under 5%% of events) and every TTML validates and reads back.")
    from .subtitle_check import add_arguments as _subtitle_arguments

    _subtitle_arguments(subs)
    voices = sub.add_parser(
        "voices", help="a simulated series named from a voice library (naming rates, DER with names)",
        description="Enroll some LibriSpeech voices of one speaker fold, build episodes from their other "
                    "utterances plus never-enrolled voices, run diarkit and its voice naming, and report per "
                    "episode and overall: enrolled speech named correctly, never-enrolled speakers named, DER "
                    "with and without names, and the threshold sweep (report.md, report.json, PNG).")
    voices.add_argument("--data", default="../shared/data/librispeech-test-other")
    voices.add_argument("--out", required=True, metavar="DIR")
    voices.add_argument("--fold", choices=["dev", "test"], default="dev",
                        help="dev: even-position speakers (threshold chosen here); test: odd (held out)")
    voices.add_argument("--num-episodes", type=int, default=8)
    voices.add_argument("--enrolled", type=int, default=3, help="voices enrolled per fold (the rest never are)")
    voices.add_argument("--enroll-utterances", type=int, default=3, help="utterances per enrolled voice")
    voices.add_argument("--turns", type=int, default=10, help="turns per episode")
    voices.add_argument("--seed", type=int, help="episode seed (default: 0 for dev, 1 for test)")
    voices.add_argument("--model-dir", default="model")
    voices.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    voices.add_argument("--rescore", metavar="SCORES_JSON",
                        help="no models: re-make the report from a run's scores.json at --threshold")
    voices.add_argument("--threshold", type=float, help="with --rescore (default: the shipped threshold)")
    return parser


def _groups(path: str | None) -> dict[str, str] | None:
    return readers.read_groups(path) if path else None


def cmd_score(args: argparse.Namespace) -> int:
    from .report import summary, write_reports
    from .scoring import ScoreSettings, score_corpus

    refs = readers.load_documents(args.ref)
    hyps = readers.load_documents(args.hyp)
    if not refs:
        raise ReaderError(args.ref, None, "no reference annotation found")
    uem = readers.read_uem(args.uem) if args.uem else None
    settings = ScoreSettings(collar=args.collar, skip_overlap=args.skip_overlap, tcp_collar=args.tcp_collar)
    scores = score_corpus(refs, hyps, settings, uem=uem, groups=_groups(args.groups))
    print(summary(scores))
    if args.out:
        inputs = {"reference": args.ref, "hypothesis": args.hyp}
        if args.uem:
            inputs["uem"] = args.uem
        if args.groups:
            inputs["groups"] = args.groups
        write_reports(scores, args.out, inputs=inputs, make_plots=not args.no_plots)
        print(f"\nreports written to {args.out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .report import summary
    from .run import run_dataset
    from .scoring import ScoreSettings

    settings = ScoreSettings(collar=args.collar, skip_overlap=args.skip_overlap, tcp_collar=args.tcp_collar)
    scores, runtime, failed = run_dataset(
        args.dataset, args.out, model_dir=args.model_dir, device=args.device, num_speakers=args.num_speakers,
        min_speakers=args.min_speakers, max_speakers=args.max_speakers, language=args.language,
        settings=settings, uem_file=args.uem, uem_from_duration=args.uem_from_duration,
        groups=_groups(args.groups), limit=args.limit, make_plots=not args.no_plots,
        word_speakers=args.word_speakers, pipeline_settings=args.settings)
    print(summary(scores))
    total = runtime[-1]
    print(f"\n{total['duration_s']:.1f} s of audio in {total['wall_s']:.1f} s (RTF {total['rtf']}), "
          f"peak RSS {total['peak_rss_mib']:.0f} MiB; reports in {args.out}")
    for f in failed:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failed else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import SimConfig, simulate

    cfg = SimConfig(data=args.data, out=args.out, num_files=args.num_files, min_speakers=args.min_speakers,
                    max_speakers=args.max_speakers, turns=args.turns, pause_mean=args.pause_mean,
                    overlap_ratio=args.overlap_ratio, overlap_min=args.overlap_min, overlap_max=args.overlap_max,
                    max_turn=args.max_turn, trim_db=args.trim_db, split_pauses=args.split_pauses, pause_db=args.pause_db,
                    seed=args.seed, prefix=args.prefix)
    conversations = simulate(cfg)
    for c in conversations:
        print(f"{c.uri}: {len(c.speakers)} speakers, {len(c.placements)} turns, "
              f"{c.num_samples / 16000:.1f} s, overlap {100 * c.overlap_ratio:.1f}%")
    print(f"wrote {len(conversations)} conversations to {args.out}")
    return 0


def cmd_music(args: argparse.Namespace) -> int:
    from .music import MusicConfig, make_set

    files = make_set(MusicConfig(sim=args.sim, out=args.out, kind=args.kind, seed=args.seed, limit=args.limit,
                                 snr_min=args.snr_min, snr_max=args.snr_max))
    print(f"wrote {len(files)} {args.kind} conversations to {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import cmd_bench as run

    return run(args)


def cmd_subtitles(args: argparse.Namespace) -> int:
    from .subtitle_check import cmd_subtitles as run

    return run(args)


def cmd_floor(args: argparse.Namespace) -> int:
    from .floor import cmd_floor as run

    return run(args)


def cmd_voices(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .voices import evaluate, run_voices, verdicts

    if args.rescore:
        from diarkit.voices.match import THRESHOLD

        report = evaluate(Path(args.rescore), Path(args.out), threshold=args.threshold or THRESHOLD)
    else:
        report = run_voices(data=args.data, out=args.out, fold=args.fold, num_episodes=args.num_episodes,
                            enrolled=args.enrolled, enroll_utterances=args.enroll_utterances, turns=args.turns,
                            seed=args.seed, model_dir=args.model_dir, device=args.device)
    print((Path(args.out) / "report.md").read_text("utf-8").split("Threshold sweep")[0].rstrip())
    return 0 if all(ok for _, ok, _ in verdicts(report["overall"])) else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    from .run import RunError
    from .bench import BenchError
    from .simulate import SimulationError
    from .music import MusicError
    from .voices import VoicesEvalError

    try:
        return {"score": cmd_score, "run": cmd_run, "simulate": cmd_simulate, "music": cmd_music,
                "bench": cmd_bench, "floor": cmd_floor, "subtitles": cmd_subtitles,
                "voices": cmd_voices}[args.command](args)
    except (ReaderError, RunError, SimulationError, BenchError, MusicError, VoicesEvalError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
