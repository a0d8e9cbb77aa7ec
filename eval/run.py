"""Run diarkit over a dataset folder, write hypotheses, score them, record speed and memory.

A dataset folder holds media files; a media file is evaluated when a reference with the
same stem sits next to it (``<stem>.rttm``; ``<stem>.stm`` adds words). ``*.uem`` files in
the folder give scored regions; without them the scored region is 0..duration of each file
(``--uem-from-duration``, the default; for the AMI excerpts, whose UEM is 0-30 s and whose
files are 30 s long, that is the documented UEM).

Memory: ``peak_rss_mib`` is the process high-water mark (``resource.getrusage().ru_maxrss``)
read after each file. It includes model loading and never decreases, so it is the peak up
to and including that file, not that file's own peak (running each file in its own process
would reload the models every time). With CUDA, ``peak_gpu_mib`` is per file
(``torch.cuda.max_memory_allocated`` after a reset).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .readers import Document, ReaderError, merge_documents, read_json, read_rttm, read_stm, read_uem
from .scoring import ScoreSet, ScoreSettings, score_corpus

log = logging.getLogger(__name__)

MEDIA_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".wma", ".mp4", ".mkv",
                  ".webm", ".mov"}
REPO_ROOT = Path(__file__).resolve().parent.parent


class RunError(RuntimeError):
    """The dataset or the diarkit library cannot be used."""


@dataclass
class Item:
    stem: str
    media: Path
    rttm: Path
    stm: Path | None = None


def find_items(dataset: Path) -> list[Item]:
    """Media files with a same-stem RTTM (sorted by stem)."""
    if not dataset.is_dir():
        raise RunError(f"{dataset}: not a folder")
    items = []
    for media in sorted(p for p in dataset.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file()):
        rttm = media.with_suffix(".rttm")
        if not rttm.exists():
            log.info("%s: no %s next to it, skipped", media.name, rttm.name)
            continue
        stm = media.with_suffix(".stm")
        items.append(Item(media.stem, media, rttm, stm if stm.exists() else None))
    return items


def _single(docs: dict[str, Document], stem: str, path: Path) -> Document:
    """The document of ``stem`` in a per-file annotation (its uri may differ from the stem)."""
    if stem in docs:
        doc = docs[stem]
    elif len(docs) == 1:
        doc = next(iter(docs.values()))
    elif not docs:
        return Document(uri=stem, turns=[], kind=path.suffix.lstrip("."), sources=[str(path)])
    else:
        raise ReaderError(path, None, f"holds several recordings ({', '.join(docs)}) and none is {stem!r}")
    doc.uri = stem
    return doc


def load_references(items: list[Item], dataset: Path) -> dict[str, Document]:
    refs = {}
    uem: dict[str, list[tuple[float, float]]] = {}
    for f in sorted(dataset.glob("*.uem")):
        regions = read_uem(f)
        if len(regions) == 1 and f.stem not in regions:  # <stem>.uem naming another uri
            regions = {f.stem: next(iter(regions.values()))}
        for uri, r in regions.items():
            uem.setdefault(uri, []).extend(r)
    for item in items:
        parts = [_single(read_rttm(item.rttm), item.stem, item.rttm)]
        if item.stm:
            parts.append(_single(read_stm(item.stm), item.stem, item.stm))
        doc = merge_documents(parts)
        doc.uem = uem.get(item.stem)
        refs[item.stem] = doc
    return refs


def import_pipeline():
    """``DiarkitPipeline`` and ``write_outputs`` (diarkit is installed: ``pip install -e .``)."""
    try:
        from diarkit.pipeline import DiarkitPipeline
        from diarkit.writers import write_outputs
    except ImportError as exc:
        raise RunError(f"cannot import diarkit ({exc}); install it with make install") from exc
    return DiarkitPipeline, write_outputs


def pipeline_options(settings: list[str]):
    """``PipelineOptions`` with ``field=value`` / ``group.field=value`` overrides (``none`` = None)."""
    import dataclasses

    from diarkit.pipeline import PipelineOptions

    options = PipelineOptions()
    for setting in settings:
        name, sep, text = setting.partition("=")
        path = name.strip().split(".")
        target = options
        for part in path[:-1]:
            target = getattr(target, part, None)
            if target is None or not dataclasses.is_dataclass(target):
                raise RunError(f"--set {setting}: {part!r} is not a group of options")
        fields = {f.name for f in dataclasses.fields(target)}
        if not sep or path[-1] not in fields:
            raise RunError(f"--set {setting}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}")
        value = json.loads(text) if text.strip().lower() not in ("none", "null") else None
        object.__setattr__(target, path[-1], value)
    return options


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _gpu():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch
    return None


def _duration(media: Path) -> float | None:
    try:
        import soundfile as sf

        return float(sf.info(str(media)).duration)
    except Exception:  # noqa: BLE001  (mp3/mp4 etc.: fall back to the pipeline's duration)
        return None


def run_dataset(dataset: str | Path, out: str | Path, *, model_dir: str | Path = "model", device: str = "auto",
                num_speakers: int | None = None, min_speakers: int | None = None,
                max_speakers: int | None = None, language: str | None = None,
                settings: ScoreSettings | None = None, uem_file: str | Path | None = None,
                uem_from_duration: bool = True, groups: dict[str, str] | None = None,
                limit: int | None = None, make_plots: bool = True, word_speakers: str | None = None,
                pipeline_settings: list[str] | None = None
                ) -> tuple[ScoreSet, list[dict[str, Any]], list[str]]:
    """Transcribe every referenced media file, write DIR/hyp/<stem>.{json,rttm}, score into DIR.

    Returns (scores, runtime rows + a TOTAL row, failures); failed files are left out of the scores.
    """
    from .report import write_reports

    dataset, out = Path(dataset), Path(out)
    settings = settings or ScoreSettings()
    items = find_items(dataset)[: limit or None]
    if not items:
        raise RunError(f"{dataset}: no media file with a same-stem .rttm reference")
    refs = load_references(items, dataset)
    uem_override = read_uem(uem_file) if uem_file else None

    DiarkitPipeline, write_outputs = import_pipeline()
    hyp_dir = out / "hyp"
    hyp_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pipeline_settings = list(pipeline_settings or []) + ([f"word_speakers={json.dumps(word_speakers)}"]
                                                         if word_speakers else [])
    extra = {"options": pipeline_options(pipeline_settings)} if pipeline_settings else {}
    pipe = DiarkitPipeline.from_model_dir(str(model_dir), device=device, **extra)
    from diarkit.request import RequestOptions

    options = RequestOptions(num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers,
                             language=language)
    load_s = time.perf_counter() - t0
    load_rss = _peak_rss_mib()
    log.info("pipeline loaded in %.1f s (peak RSS %.0f MiB)", load_s, load_rss)

    runtime: list[dict[str, Any]] = []
    hyps: dict[str, Document] = {}
    durations: dict[str, float] = {}
    failed: list[str] = []
    for n, item in enumerate(items, 1):
        torch = _gpu()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        try:
            result = pipe.transcribe(str(item.media), options=options)
        except Exception as exc:  # noqa: BLE001  one bad file must not lose the others
            log.error("%s: diarkit failed: %s", item.media.name, exc)
            failed.append(f"{item.stem}: {type(exc).__name__}: {exc}")
            refs.pop(item.stem, None)
            continue
        wall = time.perf_counter() - t
        write_outputs(result, hyp_dir, formats=["json", "rttm"], stem=item.stem)
        duration = _duration(item.media) or float(result.duration)
        durations[item.stem] = duration
        row: dict[str, Any] = {"file": item.stem, "duration_s": round(duration, 3), "wall_s": round(wall, 3),
                               "rtf": round(wall / duration, 4) if duration > 0 else None,
                               "peak_rss_mib": round(_peak_rss_mib(), 1)}
        if torch is not None:
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row.update({f"stage_{k}": round(float(v), 3) for k, v in (result.timings or {}).items()})
        runtime.append(row)
        json_path = hyp_dir / f"{item.stem}.json"
        docs = read_json(json_path) if json_path.exists() else read_rttm(hyp_dir / f"{item.stem}.rttm")
        hyps[item.stem] = _single(docs, item.stem, json_path)
        log.info("[%d/%d] %s: %.1f s audio in %.1f s (RTF %.3f)", n, len(items), item.stem, duration, wall,
                 row["rtf"] or 0)

    if not refs:
        raise RunError("diarkit failed on every file: " + "; ".join(failed))
    scores = score_corpus(refs, hyps, settings, uem=uem_override,
                          durations=durations if uem_from_duration else None, groups=groups)
    total_audio = sum(r["duration_s"] for r in runtime)
    total_wall = sum(r["wall_s"] for r in runtime)
    total_row: dict[str, Any] = {"file": "TOTAL", "duration_s": round(total_audio, 3),
                                 "wall_s": round(total_wall, 3),
                                 "rtf": round(total_wall / total_audio, 4) if total_audio else None,
                                 "peak_rss_mib": round(_peak_rss_mib(), 1)}
    for key in dict.fromkeys(k for r in runtime for k in r if k.startswith("stage_")):
        total_row[key] = round(sum(r.get(key, 0.0) for r in runtime), 3)
    runtime.append(total_row)
    notes = [f"pipeline load: {load_s:.1f} s, peak RSS after load {load_rss:.0f} MiB",
             "peak RSS = process high-water mark (ru_maxrss) after each file: includes model loading, "
             "never decreases (not a per-file peak)",
             "RTF = wall-clock transcribe time / audio duration (model loading excluded)"]
    if uem_from_duration and not uem_file:
        notes.append("files without a .uem are scored over 0..duration of the media file "
                     "(--uem-from-duration; for the AMI excerpts this is their documented 0-30 s UEM)")
    notes += [f"FAILED {f}" for f in failed]
    inputs = {"dataset": str(dataset), "model_dir": str(model_dir), "device": device,
              "hypotheses": str(hyp_dir)}
    opts = {"num_speakers": num_speakers, "min_speakers": min_speakers, "max_speakers": max_speakers,
            "language": language}
    inputs.update({k: str(v) for k, v in opts.items() if v is not None})
    write_reports(scores, out, title=f"diarkit run on {dataset.name}", inputs=inputs, runtime=runtime,
                  extra_notes=notes, make_plots=make_plots)
    _write_runtime_csv(runtime, out / "runtime.csv")
    return scores, runtime, failed


def _write_runtime_csv(runtime: list[dict[str, Any]], path: Path) -> None:
    import csv

    columns: list[str] = []
    for r in runtime:
        columns += [k for k in r if k not in columns]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(runtime)

