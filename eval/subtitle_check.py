"""``python -m eval subtitles HYP...``: write SRT, WebVTT and TTML from diarkit JSON results and
check every file against the subtitle rules (acceptance check of issue 15).

Passes when no file breaks any rule except reading speed, every reading-speed violation is
one the result's ``warnings`` already lists (verbatim words that cannot fit: a person
condenses them), those stay under ``--max-warning-share`` of the events, and every TTML
validates as IMSC text profile and reads back with the same events and text.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)
FORMATS = ("srt", "vtt", "ttml")


def check_results(paths: list[Path], out: Path, *, max_warning_share: float = 0.05) -> tuple[dict, list[str]]:
    from diarkit.result import TranscriptResult
    from diarkit.subtitles import check_file, read_subtitles, track_for
    from diarkit.ttml import validate_imsc_text
    from diarkit.writers import write_outputs

    totals: Counter = Counter()
    problems: list[str] = []
    files = []
    for path in paths:
        result = TranscriptResult.from_dict(json.loads(path.read_text("utf-8")))
        track = track_for(result)
        listed = sum(1 for w in result.warnings if w.startswith("subtitle "))
        if listed != len(track.warnings):
            problems.append(f"{path.name}: {len(track.warnings)} reading-speed events, {listed} in the JSON warnings")
        totals["events"] += len(track.events)
        totals["warnings"] += len(track.warnings)
        kinds: Counter = Counter()
        for written in write_outputs(result, out, list(FORMATS), stem=path.stem):
            violations = check_file(written, track.rules, track.rate)
            fmt = written.suffix[1:]
            for v in violations:
                kinds[f"{fmt}:{v.kind}"] += 1
                if v.kind != "reading_speed":
                    problems.append(f"{written.name}: {v}")
            speed = sum(1 for v in violations if v.kind == "reading_speed")
            if speed > len(track.warnings):
                problems.append(f"{written.name}: {speed} reading-speed violations, {len(track.warnings)} warned")
            if fmt == "ttml":
                check = validate_imsc_text(written.read_bytes())
                problems.extend(f"{written.name}: IMSC: {p}" for p in check.problems)
                events, _ = read_subtitles(written)
                back = [(e.start * track.rate.fps, e.end * track.rate.fps, e.lines) for e in events]
                if back != [(e.start, e.end, e.lines) for e in track.events]:
                    problems.append(f"{written.name}: events read back differ from the events written")
        totals.update(kinds)
        files.append({"file": path.name, "events": len(track.events), "warnings": len(track.warnings),
                      "violations": dict(kinds)})
    share = totals["warnings"] / totals["events"] if totals["events"] else 0.0
    if share >= max_warning_share:
        problems.append(f"reading-speed warnings on {share:.1%} of events (limit {max_warning_share:.0%})")
    report = {"files": len(paths), "events": totals["events"], "warnings": totals["warnings"],
              "warning_share": round(share, 4), "violations": {k: v for k, v in totals.items()
                                                               if k not in ("events", "warnings")},
              "per_file": files, "problems": problems}
    return report, problems


def add_arguments(p) -> None:
    p.add_argument("hyp", nargs="+", metavar="HYP", help="diarkit JSON results, or folders of them")
    p.add_argument("--out", required=True, metavar="DIR", help="where the SRT/VTT/TTML and report.json go")
    p.add_argument("--max-warning-share", type=float, default=0.05)


def cmd_subtitles(args) -> int:
    paths: list[Path] = []
    for name in args.hyp:
        p = Path(name)
        paths.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    if not paths:
        print("no diarkit JSON found")
        return 2
    out = Path(args.out)
    report, problems = check_results(paths, out, max_warning_share=args.max_warning_share)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(f"{report['files']} files, {report['events']} events, {report['warnings']} reading-speed warnings "
          f"({report['warning_share']:.1%}); violations by format and kind: {report['violations'] or 'none'}")
    for problem in problems:
        print(f"PROBLEM {problem}")
    return 1 if problems else 0
