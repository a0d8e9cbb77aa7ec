"""report.md / report.csv / report.json and plots from a :class:`ScoreSet`.

The markdown and JSON repeat the scoring conventions (collar meaning, UEM source,
normalization) so that a number is never read without them.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from . import plots
from .scoring import Row, ScoreSet

log = logging.getLogger(__name__)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _part(row: Row, seconds: float) -> str:
    p = row.pct(seconds)
    return f"n/a ({seconds:.2f} s)" if p is None else f"{p:.2f}% ({seconds:.2f} s)"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """Fixed-width table for the terminal."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
           for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _rows(scores: ScoreSet) -> list[Row]:
    return [f.row for f in scores.files] + scores.groups + [scores.overall]


DIAR_HEADERS = ["Name", "DER", "Correct", "Miss", "Error", "False Alarm", "JER", "Purity", "Coverage",
                "Ref spk", "Hyp spk", "Ref speech (s)", "Scored (s)"]
TEXT_HEADERS = ["Name", "WER", "cpWER", "tcpWER", "Ref words", "Sub", "Del", "Ins"]


def _diar_cells(r: Row) -> list[Any]:
    return [r.name, _pct(r.der), _part(r, r.correct), _part(r, r.missed), _part(r, r.confusion),
            _part(r, r.false_alarm), _pct(r.jer), _pct(r.purity), _pct(r.coverage),
            r.ref_speakers, r.hyp_speakers, f"{r.total:.2f}", f"{r.scored:.2f}"]


def _text_cells(r: Row) -> list[Any]:
    w = r.wer
    return [r.name, _pct(w.rate) if w else "n/a", _pct(r.cpwer.rate) if r.cpwer else "n/a",
            _pct(r.tcpwer.rate) if r.tcpwer else "n/a", w.length if w else "",
            w.substitutions if w else "", w.deletions if w else "", w.insertions if w else ""]


def summary(scores: ScoreSet) -> str:
    """Terminal summary: per file, per group and overall, percentages of reference speech."""
    def cells(r: Row) -> list[Any]:
        def p(x):
            v = r.pct(x)
            return "n/a" if v is None else f"{v:.2f}"
        return [r.name, "n/a" if r.der is None else f"{100 * r.der:.2f}", p(r.correct), p(r.missed),
                p(r.confusion), p(r.false_alarm), "n/a" if r.jer is None else f"{100 * r.jer:.2f}",
                f"{r.ref_speakers}/{r.hyp_speakers}"]
    headers = ["Name", "DER%", "Correct%", "Miss%", "Error%", "FA%", "JER%", "Spk ref/hyp"]
    rows = [f.row for f in scores.files]
    body = [cells(r) for r in rows] + [["-"] * len(headers)] * bool(scores.groups) \
        + [cells(r) for r in scores.groups] + [["-"] * len(headers), cells(scores.overall)]
    text = text_table(headers, body)
    if scores.overall.wer is not None:
        text += "\n\n" + text_table(TEXT_HEADERS, [_text_cells(r) for r in _rows(scores) if r.wer is not None])
    text += f"\n\ncollar {scores.settings.collar:g} s (pyannote total width), overlap " \
            f"{'skipped' if scores.settings.skip_overlap else 'scored'}"
    text += "".join(f"\nnote: {n}" for n in scores.notes)
    return text


def write_csv(scores: ScoreSet, path: Path) -> None:
    rows = []
    for f in scores.files:
        d = f.row.to_dict()
        d.update(group=f.group or "", uem_source=f.uem_source)
        rows.append(d)
    for r in scores.groups + [scores.overall]:
        d = r.to_dict()
        d.update(group=r.name if r.level == "group" else "", uem_source="")
        rows.append(d)
    columns = list(rows[0]) if rows else ["level", "name"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def to_json(scores: ScoreSet, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    s = scores.settings
    data: dict[str, Any] = {
        "settings": {"collar": s.collar, "collar_convention": "pyannote: total width around each "
                     "reference boundary (md-eval -c collar/2)", "skip_overlap": s.skip_overlap,
                     "tcp_collar": s.tcp_collar},
        "conventions": s.describe(),
        "overall": scores.overall.to_dict(),
        "groups": [g.to_dict() for g in scores.groups],
        "files": [],
        "notes": scores.notes,
    }
    for f in scores.files:
        d = f.row.to_dict()
        d.update(group=f.group, uem=[list(u) for u in f.uem], uem_source=f.uem_source, mapping=f.mapping,
                 reference_sources=f.ref.sources, hypothesis_sources=f.hyp.sources)
        data["files"].append(d)
    if extra:
        data.update(extra)
    return data


def write_reports(scores: ScoreSet, out_dir: str | Path, *, title: str = "diarkit evaluation",
                  inputs: dict[str, str] | None = None, runtime: list[dict[str, Any]] | None = None,
                  extra_notes: list[str] | None = None, make_plots: bool = True) -> dict[str, Path]:
    """Write report.md, report.csv, report.json and PNGs into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "json": out / "report.json"}
    images: list[Path] = []
    if make_plots:
        bar_rows = (scores.groups if scores.groups else [f.row for f in scores.files]) + [scores.overall]
        p = plots.plot_der_parts(bar_rows, out / "der_parts.png",
                                 "DER parts per group" if scores.groups else "DER parts per file")
        if p:
            images.append(p)
        for f in scores.files:
            p = plots.plot_timeline(f, out / f"timeline_{plots.safe_name(f.uri)}.png", scores.settings)
            if p:
                images.append(p)
    paths.update({p.stem: p for p in images})

    write_csv(scores, paths["csv"])
    notes = list(scores.notes) + list(extra_notes or [])
    uem_sources = sorted({f.uem_source for f in scores.files if f.uem_source})
    extra: dict[str, Any] = {"inputs": inputs or {}, "uem_sources": uem_sources, "notes": notes}
    if runtime is not None:
        extra["runtime"] = runtime
    paths["json"].write_text(json.dumps(to_json(scores, extra), indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")

    md = [f"# {title}", ""]
    if inputs:
        md += [f"- {k}: `{v}`" for k, v in inputs.items()] + [""]
    md += ["## Conventions", ""] + [f"- {c}" for c in scores.settings.describe()]
    md += [f"- scored region (UEM): {', '.join(uem_sources) or 'n/a'}", ""]
    md += ["## Diarization", "", "Parts are % of reference speech (seconds in brackets); "
           "Error = speaker confusion.", ""]
    md += ["### Overall", "", markdown_table(DIAR_HEADERS, [_diar_cells(scores.overall)]), ""]
    if scores.groups:
        md += ["### Per group", "", markdown_table(DIAR_HEADERS, [_diar_cells(r) for r in scores.groups]), ""]
    md += ["### Per file", "",
           markdown_table(["Group"] + DIAR_HEADERS, [[f.group or ""] + _diar_cells(f.row) for f in scores.files]),
           ""]
    mapped = [f for f in scores.files if f.mapping]
    if mapped:
        md += ["### Speaker mapping (hypothesis -> reference, optimal)", ""]
        md += [f"- {f.uri}: " + ", ".join(f"{h} -> {r}" for h, r in sorted(f.mapping.items())) for f in mapped]
        md += [""]
    if scores.overall.wer is not None:
        md += ["## Transcripts", "", markdown_table(TEXT_HEADERS, [_text_cells(r) for r in _rows(scores)
                                                                  if r.wer is not None]), ""]
    if runtime:
        keys = list(dict.fromkeys(k for r in runtime for k in r if k.startswith("stage_")))  # pipeline order
        headers = ["File", "Audio (s)", "Wall (s)", "RTF", "Peak RSS (MiB)"] + [k[6:] + " (s)" for k in keys]
        body = [[r["file"], f"{r.get('duration_s', 0):.2f}", f"{r.get('wall_s', 0):.2f}",
                 f"{r['rtf']:.3f}" if r.get("rtf") is not None else "n/a",
                 f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") is not None else "n/a"]
                + [f"{r[k]:.2f}" if isinstance(r.get(k), (int, float)) else "" for k in keys] for r in runtime]
        md += ["## Runtime", "", markdown_table(headers, body), ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if images:
        md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images] + [""]
    paths["md"].write_text("\n".join(md), encoding="utf-8")
    log.info("reports written to %s", out)
    return paths
