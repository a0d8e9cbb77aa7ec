"""``diarkit check-subtitles FILE... [--rules NAME]``: every rule each subtitle file breaks."""

from __future__ import annotations

import argparse
import sys

from diarkit.errors import DiarkitError


def add_subcommand(subparsers) -> None:
    from diarkit.subtitles import DEFAULT_RULES, RULES
    from diarkit.timecode import DEFAULT_FRAME_RATE, NAMED_RATES

    p = subparsers.add_parser(
        "check-subtitles", help="check SRT, WebVTT or TTML files against a subtitle rules profile",
        description="Lists every violation (line length, line count, reading speed, duration, gap, overlap, "
                    "timecode not on a frame), one per line; exit status 1 when there is one, 2 when a file "
                    "cannot be read.")
    p.add_argument("files", nargs="+", metavar="FILE", help=".srt, .vtt or .ttml files")
    p.add_argument("--rules", default=DEFAULT_RULES, help=f"rules profile: {', '.join(RULES)} "
                                                          f"(default {DEFAULT_RULES})")
    p.add_argument("--frame-rate", help=f"frame grid: {', '.join(NAMED_RATES)} (default: a TTML file's own "
                                        f"ttp:frameRate, else {DEFAULT_FRAME_RATE})")
    p.set_defaults(handler=cmd_check_subtitles)


def cmd_check_subtitles(args: argparse.Namespace) -> int:
    from diarkit.subtitles import check_file, get_rules

    status = 0
    try:
        rules = get_rules(args.rules)
    except DiarkitError as exc:
        print(f"diarkit: error: {exc}", file=sys.stderr)
        return 2
    for name in args.files:
        try:
            violations = check_file(name, rules, args.frame_rate)
        except DiarkitError as exc:
            print(f"diarkit: error: {exc}", file=sys.stderr)
            status = 2
            continue
        for violation in violations:
            print(f"{name}: {violation}")
        print(f"{name}: {len(violations)} violation(s) of {rules.name}", file=sys.stderr)
        if violations and status == 0:
            status = 1
    return status
