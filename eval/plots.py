"""PNG plots: a timeline per file and DER parts per group (matplotlib, Agg backend: no display)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .scoring import FileResult, Row, ScoreSettings, error_regions  # noqa: E402

log = logging.getLogger(__name__)

ERROR_COLOURS = {"missed": "#d62728", "false_alarm": "#ff7f0e", "confusion": "#9467bd"}
ERROR_NAMES = {"missed": "miss", "false_alarm": "false alarm", "confusion": "confusion"}


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "file"


def _palette(n: int) -> list:
    """Speaker colours that never look like the error colours (tab10 minus red, orange, purple)."""
    tab10, tab20b = plt.get_cmap("tab10"), plt.get_cmap("tab20b")
    colours = [tab10(i) for i in (0, 2, 5, 6, 9, 8, 7)] + [tab20b(i) for i in range(20)]
    return [colours[i % len(colours)] for i in range(n)]


def plot_timeline(result: FileResult, path: Path, settings: ScoreSettings | None = None) -> Path | None:
    """Reference lane above hypothesis lane (one sub-row per speaker, so overlap shows), errors below.

    Hypothesis speakers take the colour of the reference speaker they are mapped to (optimal
    mapping), so a colour change between the lanes is a confusion; unmapped ones are hatched.
    """
    if result.ref.turns is None or result.hyp.turns is None:
        return None
    ref_labels = sorted({t.speaker for t in result.ref.turns})
    hyp_labels = sorted({t.speaker for t in result.hyp.turns},
                        key=lambda h: (h not in result.mapping,
                                       ref_labels.index(result.mapping[h]) if h in result.mapping else 0, h))
    unmapped = [h for h in hyp_labels if h not in result.mapping]
    colours = dict(zip(ref_labels + [f"\x00{h}" for h in unmapped], _palette(len(ref_labels) + len(unmapped))))

    def hyp_colour(h):
        return colours[result.mapping[h]] if h in result.mapping else colours[f"\x00{h}"]

    errors = error_regions(result, settings)
    ends = [t.end for t in result.ref.turns + result.hyp.turns] + [e for _, e in result.uem]
    xmax = max(ends) if ends else 1.0

    fig, ax = plt.subplots(figsize=(14, 3.6))
    lanes = [("reference", 2.0), ("hypothesis", 1.0), ("errors", 0.0)]
    height = 0.8

    def draw_lane(y0, labels, turns_by_label, colour_of, hatch_of=lambda _: None):
        n = max(len(labels), 1)
        sub = height / n
        for i, label in enumerate(labels):
            bars = [(t.start, t.end - t.start) for t in turns_by_label(label)]
            ybot = y0 + height / 2 - (i + 1) * sub
            ax.broken_barh(bars, (ybot, sub * 0.9), facecolors=colour_of(label), hatch=hatch_of(label),
                           edgecolor="black" if hatch_of(label) else "none", linewidth=0.3)

    draw_lane(2.0, ref_labels, lambda l: [t for t in result.ref.turns if t.speaker == l], lambda l: colours[l])
    draw_lane(1.0, hyp_labels, lambda l: [t for t in result.hyp.turns if t.speaker == l], hyp_colour,
              lambda l: "//" if l not in result.mapping else None)
    kinds = list(ERROR_COLOURS)
    sub = height / len(kinds)
    for i, kind in enumerate(kinds):
        ybot = 0.0 + height / 2 - (i + 1) * sub
        ax.broken_barh([(s, e - s) for s, e in errors[kind]], (ybot, sub * 0.9), facecolors=ERROR_COLOURS[kind])

    # grey = not scored (outside the UEM)
    scored = sorted(result.uem)
    cursor, unscored = 0.0, False
    for s, e in scored + [(xmax, xmax)]:
        if s > cursor:
            ax.axvspan(cursor, s, color="0.85", zorder=0)
            unscored = True
        cursor = max(cursor, e)

    ax.set_yticks([y for _, y in lanes], [name for name, _ in lanes])
    ax.set_ylim(-0.6, 2.6)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("time (s)")
    row = result.row
    der = "n/a" if row.der is None else f"{100 * row.der:.1f}%"
    ax.set_title(f"{result.uri}  DER {der}  (ref {row.ref_speakers} spk, hyp {row.hyp_speakers} spk)")
    handles = [Patch(facecolor=colours[l], label=l) for l in ref_labels]
    handles += [Patch(facecolor=hyp_colour(h), hatch="//", edgecolor="black", label=f"{h} (unmapped)")
                for h in unmapped]
    handles += [Patch(facecolor=ERROR_COLOURS[k], label=ERROR_NAMES[k]) for k in kinds]
    if unscored:
        handles.append(Patch(facecolor="0.85", label="not scored (outside UEM)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_der_parts(rows: list[Row], path: Path, title: str = "DER parts") -> Path | None:
    """Stacked miss / false alarm / confusion (% of reference speech) per group (or file) + overall."""
    rows = [r for r in rows if r.der is not None and r.total > 0]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(rows) + 2), 4))
    names = [r.name for r in rows]
    bottom = [0.0] * len(rows)
    for kind in ERROR_COLOURS:
        values = [r.pct(getattr(r, kind)) or 0.0 for r in rows]
        ax.bar(names, values, bottom=bottom, color=ERROR_COLOURS[kind], label=ERROR_NAMES[kind])
        bottom = [b + v for b, v in zip(bottom, values)]
    for i, r in enumerate(rows):
        ax.text(i, bottom[i], f"{100 * r.der:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("% of reference speech")
    ax.set_title(title)
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=45 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
