"""``diarkit`` command line: a thin adapter over DiarkitPipeline."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path

from diarkit import __version__
from diarkit.errors import DiarkitError, OptionsError
from diarkit.models.manifest import DEFAULT_MODEL_DIR
from diarkit.request import RequestOptions
from diarkit import subtitles_command
from diarkit.review import command as review_command
from diarkit.serving import command as serve_command
from diarkit.voices import command as voices_command
from diarkit.worker import command as worker_command
from diarkit.writers import RENDERERS, check_output_dir, parse_formats, write_outputs

#: modules that add a subcommand with ``add_subcommand(subparsers)``; each sets
#: ``handler`` (a function of the parsed args returning the exit status) and imports
#: its heavy dependencies only when it runs.
SUBCOMMANDS = (serve_command, worker_command, subtitles_command, review_command, voices_command)


def _add_transcribe(sub) -> None:
    p = sub.add_parser("transcribe", help="diarize and transcribe media files",
                       description="Who said what, when: words with times and speaker labels.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio or video files")
    p.add_argument("-o", "--output-dir", default="out", help="where results go (default: out/)")
    p.add_argument("--formats", default=",".join(RENDERERS),
                   help=f"comma-separated output formats (default: {','.join(RENDERERS)})")
    p.add_argument("--num-speakers", type=int, help="exact number of speakers, when known")
    p.add_argument("--min-speakers", type=int, help="at least this many speakers")
    p.add_argument("--max-speakers", type=int, help="at most this many speakers")
    p.add_argument("--language", help="language code (default: the model's, or detected)")
    p.add_argument("--frame-rate", help="subtitle/timecode frame rate: 23.976, 24, 25, 29.97, 29.97df, 30 "
                                        "(default: the video's, else 25)")
    p.add_argument("--subtitle-rules", help="subtitle rules profile (default: streaming-en)")
    p.add_argument("--voices", metavar="LIB", help="voice library (folder or s3://...) naming known speakers")
    p.add_argument("--model-dir", default=DEFAULT_MODEL_DIR, help="model directory (default: model/)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only the summary and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    p.set_defaults(handler=cmd_transcribe)


def _progress_display(quiet: bool):
    """A rich progress bar per stage, or nothing when quiet / not a terminal."""
    if quiet:
        return None, lambda *a: None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                        transient=True, disable=not sys.stderr.isatty())
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return progress, update


def cmd_transcribe(args) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 120)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        formats = parse_formats(args.formats)
        options = RequestOptions.from_flags(num_speakers=args.num_speakers, min_speakers=args.min_speakers,
                                            max_speakers=args.max_speakers, language=args.language,
                                            frame_rate=args.frame_rate, subtitle_rules=args.subtitle_rules,
                                            voices=args.voices)
    except OptionsError as exc:
        errors.print(f"diarkit: error: {exc}", markup=False)
        return 2
    made_output_dir = not Path(args.output_dir).exists()
    try:
        check_output_dir(args.output_dir)  # before the models load and any file is transcribed
    except DiarkitError as exc:
        errors.print(f"diarkit: error: {exc}", markup=False)
        return 2

    try:
        from diarkit.pipeline import DiarkitPipeline

        pipeline = DiarkitPipeline.from_model_dir(args.model_dir, device=args.device)
        if options.voices:  # a missing or foreign voice library fails once, before any file
            pipeline.voices.libraries.get(options.voices)
    except DiarkitError as exc:
        errors.print(f"diarkit: error: {exc}", markup=False)
        if made_output_dir:  # nothing was written: leave no empty output folder behind
            with contextlib.suppress(OSError):
                Path(args.output_dir).rmdir()
        return 2

    out_dir = Path(args.output_dir)
    rows, failures = [], []
    stems = output_stems([Path(name) for name in args.inputs])
    for index, name in enumerate(args.inputs, 1):
        path = Path(name)
        if not args.quiet:
            errors.print(f"[{index}/{len(args.inputs)}] {path}", markup=False)
        progress, update = _progress_display(args.quiet)
        started = time.perf_counter()
        try:
            with progress or contextlib.nullcontext():
                result = pipeline.transcribe(path, options=options, progress=update)
            written = [p.name for p in write_outputs(result, out_dir, formats, stem=stems[index - 1])]
        except DiarkitError as exc:
            failures.append((str(path), str(exc) if exc.path else f"{path}: {exc}"))
            errors.print(f"diarkit: error: {failures[-1][1]}", markup=False)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the batch
            logging.getLogger("diarkit").debug("failure on %s", path, exc_info=True)
            failures.append((str(path), f"{path}: unexpected error: {type(exc).__name__}: {exc}"))
            errors.print(f"diarkit: error: {failures[-1][1]}", markup=False)
            continue
        elapsed = time.perf_counter() - started
        rows.append((str(path), result, elapsed, written))

    if rows:
        table = Table(title=f"diarkit {__version__}: results in {out_dir}/")
        for column in ("file", "duration", "speakers", "words", "RTF", "outputs"):
            table.add_column(column, justify="right" if column in ("duration", "speakers", "words", "RTF") else "left")
        for name, result, elapsed, written in rows:
            rtf = elapsed / result.duration if result.duration else 0.0
            table.add_row(Path(name).name, f"{result.duration:.1f} s", str(result.num_speakers),
                          str(len(result.words)), f"{rtf:.3f}", ",".join(p.rsplit(".", 1)[-1] for p in written))
        console.print(table)
    if failures:
        errors.print(f"{len(failures)} of {len(args.inputs)} file(s) failed:", markup=False)
        for _, message in failures:
            errors.print(f"  - {message}", markup=False)
        return 1
    return 0


def output_stems(paths: list[Path]) -> list[str]:
    """Each input's output name: its stem, or stem.ext when another input of the batch has the
    same stem (a.wav and a.mp3 must not both write a.json)."""
    counts: dict[str, set[Path]] = {}
    for path in paths:
        counts.setdefault(path.stem, set()).add(path.resolve())
    return [path.name if len(counts[path.stem]) > 1 else path.stem for path in paths]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diarkit", description="Speaker diarization and transcription.")
    parser.add_argument("--version", action="version", version=f"diarkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_transcribe(sub)
    for module in SUBCOMMANDS:
        module.add_subcommand(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level > logging.INFO:
        _quiet_third_party()
    return args.handler(args)


def _quiet_third_party() -> None:
    """Libraries below us warn about things users cannot act on (checkpoint upgrades...)."""
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "whisperx", "pyannote",
                 "speechbrain", "faster_whisper"):
        logging.getLogger(name).setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
