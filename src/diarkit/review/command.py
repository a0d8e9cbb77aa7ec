"""``diarkit review RESULT.json --media MEDIA``: flags -> a ReviewConfig -> the local page."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from diarkit.errors import DiarkitError
from diarkit.models.manifest import DEFAULT_MODEL_DIR
from diarkit.writers import RENDERERS

logger = logging.getLogger("diarkit.review")


def add_subcommand(subparsers) -> None:
    p = subparsers.add_parser(
        "review", help="check and correct speakers in a local browser page",
        description="Serve a page with the media player, a speaker timeline and the transcript: rename and "
                    "merge speakers, move segments or words to another speaker, split segments, then save "
                    "the corrected result and its formats beside the original (which is kept).")
    p.add_argument("result", metavar="RESULT.json", help="the JSON that diarkit transcribe wrote")
    p.add_argument("--media", required=True, help="the audio or video file the result was made from")
    p.add_argument("--voices", metavar="LIB",
                   help="voice library (folder or s3://...) to add the speakers you name to on save")
    p.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                   help="model directory whose speaker encoder the voice library uses (default: model/)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other address requires a random "
                        "token in the URL)")
    p.add_argument("--port", type=int, default=8770, help="port (default 8770; 0 picks a free one)")
    p.add_argument("--token", action="store_true", help="require the random URL token on loopback too")
    p.add_argument("--formats", default=",".join(RENDERERS),
                   help=f"formats written on save (default: {','.join(RENDERERS)}; json always)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    p.set_defaults(handler=cmd_review)


def cmd_review(args: argparse.Namespace) -> int:
    logging.getLogger("diarkit").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from diarkit.review.app import ReviewConfig, run_review

    try:
        # a library made with another encoder, or unreadable, fails now, not at save (a new folder is made then)
        if args.voices and (args.voices.startswith("s3://") or Path(args.voices).expanduser().exists()):
            from diarkit.models.manifest import ModelDirectory
            from diarkit.voices.library import EmbeddingModel, load_library

            load_library(args.voices, EmbeddingModel.of(ModelDirectory(args.model_dir)))
        config = ReviewConfig(result=Path(args.result), media=Path(args.media), host=args.host, port=args.port,
                              token_required=args.token, formats=args.formats, voices=args.voices,
                              model_dir=args.model_dir)
        return run_review(config, open_browser=args.open)
    except DiarkitError as exc:
        print(f"diarkit review: error: {exc}", file=sys.stderr)
        return 2
