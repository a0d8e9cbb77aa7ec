"""Error floor of the segmentation stage: DER when clustering is perfect.

``python -m eval floor DATASET [--thresholds 0.45,0.5] [--out FILE.md]``

Why: the number of speakers active in each frame comes from the segmentation model
(binarized local activations, aggregated over the sliding chunks). Clustering only decides
*which* speaker each local track is, so no clustering can repair a frame counted wrong.
Given the count, missed speech and false alarm are fixed (pyannote.metrics counts them
frame by frame from the number of reference and hypothesis speakers), so **miss + false
alarm is a floor no clustering can go below**; clustering only changes confusion.
``eval/RESULTS.md`` uses this to tell which DER targets clustering can still reach.
For comparison, pyannote's ``OracleClustering`` (every local speaker gets the reference
speaker it overlaps most in its chunk) and the same with the reference count per frame.
Oracle clustering is not a bound on DER itself: when the count is too high, which extra
speaker a frame gets depends on the labels, and diarkit's clustering can score lower.

Exit codes as ``run``: 0 ok, 1 some files failed (left out of the totals, listed on
stderr), 2 bad input. Per threshold, three rows: diarkit's own clustering (the chosen defaults), oracle
clustering, oracle clustering + oracle count. The count columns split the reference
speech that the *count* misses: in frames counted as silence, and in frames counted
with fewer speakers than the reference (overlap), plus speech counted where the reference
has none, all as % of reference speech (frames at the count resolution).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .run import RunError, find_items, import_pipeline, load_references
from .scoring import to_annotation

log = logging.getLogger(__name__)

MODES = ("diarkit clustering", "oracle clustering", "oracle clustering + oracle count")


@dataclass
class FloorRow:
    threshold: float
    mode: str
    min_duration_off: float = 0.0
    reference_s: float = 0.0
    missed_s: float = 0.0
    false_alarm_s: float = 0.0
    confusion_s: float = 0.0
    # frame counts (count resolution), summed over files
    reference_frames: int = 0
    count_silent_frames: int = 0  # reference speech in frames counted 0
    count_overlap_frames: int = 0  # reference speakers above a non-zero count
    count_extra_frames: int = 0  # counted speakers above the reference count
    files: list[str] = field(default_factory=list)

    def pct(self, seconds: float) -> float:
        return 100.0 * seconds / self.reference_s if self.reference_s else float("nan")

    def frame_pct(self, frames: int) -> float:
        return 100.0 * frames / self.reference_frames if self.reference_frames else float("nan")

    def add(self, other: "FloorRow") -> None:
        for name in ("reference_s", "missed_s", "false_alarm_s", "confusion_s", "reference_frames",
                     "count_silent_frames", "count_overlap_frames", "count_extra_frames"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.files.extend(other.files)

    @property
    def der(self) -> float:
        return self.pct(self.missed_s + self.false_alarm_s + self.confusion_s)

    @property
    def count_floor(self) -> float:
        """Miss + false alarm: set by the count alone, whatever the clustering."""
        return self.pct(self.missed_s + self.false_alarm_s)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET", help="folder of media files with same-stem .rttm")
    p.add_argument("--thresholds", default="0.45",
                   help="comma-separated segmentation thresholds (default %(default)s, the diarkit default)")
    p.add_argument("--min-duration-off", type=float, default=None, metavar="SECONDS",
                   help="bridge same-speaker gaps shorter than this (default: the diarkit default)")
    p.add_argument("--step", type=float, default=None, metavar="RATIO",
                   help="segmentation step as a fraction of the 5 s chunk (default: diarkit's 0.1)")
    p.add_argument("--model-dir", default="model", help="diarkit model folder (default %(default)s)")
    p.add_argument("--limit", type=int, help="only the first N files (sorted by name)")
    p.add_argument("--out", metavar="FILE", help="also write the Markdown table here")


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise RunError(f"--thresholds {text!r}: expected numbers separated by commas, e.g. 0.4,0.45") from None
    if not values or any(not 0.0 < v < 1.0 for v in values):
        raise RunError(f"--thresholds {text!r}: each threshold must be between 0 and 1")
    return values


def reference_count(reference, sliding_window, num_frames: int) -> np.ndarray:
    """Number of reference speakers active at the middle of each frame."""
    middles = sliding_window.start + sliding_window.duration / 2 + sliding_window.step * np.arange(num_frames)
    count = np.zeros(num_frames, dtype=np.int64)
    for segment, _, _ in reference.itertracks(yield_label=True):
        count[(middles >= segment.start) & (middles < segment.end)] += 1
    return count


def floor_dataset(dataset: str | Path, thresholds: list[float], *, model_dir: str | Path = "model",
                  limit: int | None = None, min_duration_off: float | None = None,
                  step: float | None = None) -> tuple[list[FloorRow], list[str]]:
    """Rows summed over the files, and the files that failed (logged, left out of the rows)."""
    import torch
    from pyannote.audio.pipelines.clustering import OracleClustering

    import_pipeline()  # a clear RunError when diarkit is not installed
    from diarkit.diarization.diarizer import DiarizationOptions, LocalSpeakerDiarization
    from diarkit.models.manifest import ModelDirectory
    from diarkit.models.registry import LoadContext
    from diarkit.models.segmentation import Segmenter

    dataset = Path(dataset)
    items = find_items(dataset)[:limit]
    if not items:
        raise RunError(f"{dataset}: no media file with a same-stem .rttm")
    references = load_references(items, dataset)
    models = ModelDirectory(model_dir)
    device = torch.device("cpu")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    segmenter = Segmenter(models.path("segmentation"), device, **({"step_ratio": step} if step else {}))
    encoder = models.load("embedding", LoadContext(device="cpu", cpu_threads=torch.get_num_threads()))
    options = DiarizationOptions()
    if min_duration_off is not None:
        options.min_duration_off = min_duration_off
    pipeline = LocalSpeakerDiarization(segmenter, encoder, options)
    oracle = OracleClustering()

    totals = {(t, m): FloorRow(t, m, options.min_duration_off) for t in thresholds for m in MODES}
    failed = []
    for item in items:
        try:
            rows = score_file(item, references[item.stem], thresholds, segmenter, pipeline, oracle, options)
        except Exception as exc:  # noqa: BLE001 - one bad file must not lose the others
            log.error("%s: %s (left out of the totals)", item.media, exc)
            failed.append(f"{item.media}: {exc}")
            continue
        for key, row in rows.items():
            totals[key].add(row)
    return list(totals.values()), failed


def score_file(item, doc, thresholds: list[float], segmenter, pipeline, oracle,
               options) -> dict[tuple[float, str], FloorRow]:
    import torch
    from pyannote.audio.utils.signal import binarize
    from pyannote.core import Annotation, Segment, SlidingWindowFeature
    from pyannote.metrics.diarization import DiarizationErrorRate
    from diarkit.audio import SAMPLE_RATE, decode
    from diarkit.diarization.diarizer import LocalSpeakerDiarization

    audio = decode(item.media)
    duration = len(audio) / SAMPLE_RATE
    reference = to_annotation(doc.turns, item.stem)
    uem = doc.uem or [(0.0, duration)]
    segmentation = segmenter(audio)
    file = {"waveform": torch.from_numpy(audio).unsqueeze(0), "sample_rate": SAMPLE_RATE,
            "uri": item.stem, "annotation": reference}
    log.info("%s: %.1f s, %d reference speakers", item.stem, duration, len(reference.labels()))
    rows = {}
    for threshold in thresholds:
        pipeline.instantiate({**options.parameters(), "segmentation": {
            "threshold": threshold, "min_duration_off": options.min_duration_off}})
        binarized = binarize(segmentation.chunks, onset=threshold, initial_state=False)
        count = pipeline.speaker_count(binarized, segmenter.frames, warm_up=(0.0, 0.0))
        reference_frames = reference_count(reference, count.sliding_window, count.data.shape[0])
        inactive = np.sum(binarized.data, axis=1) == 0
        for mode in MODES:
            if mode == MODES[0]:
                own = {"waveform": file["waveform"], "sample_rate": SAMPLE_RATE, "uri": item.stem,
                       LocalSpeakerDiarization.PRECOMPUTED: segmentation.chunks}
                with torch.inference_mode():
                    hypothesis = pipeline(own).speaker_diarization
                frame_count = count.data[:, 0].astype(np.int64)
            else:
                hard, _, _ = oracle(segmentations=binarized, file=file, frames=segmenter.frames)
                hard = hard.copy()
                hard[inactive] = -2
                mode_count = SlidingWindowFeature(count.data.astype(np.int8), count.sliding_window)
                if mode == MODES[2]:
                    mode_count.data = reference_frames.reshape(-1, 1).astype(np.int8)
                frame_count = mode_count.data[:, 0].astype(np.int64)
                hypothesis = Annotation(uri=item.stem)
                if np.max(frame_count) > 0:
                    discrete = pipeline.reconstruct(segmentation.chunks, hard, mode_count)
                    hypothesis = pipeline.to_annotation(discrete, min_duration_on=0.0,
                                                        min_duration_off=options.min_duration_off)
            row = FloorRow(threshold, mode, options.min_duration_off, files=[item.stem])
            metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
            for start, end in uem:
                scored = metric(reference, hypothesis, uem=Segment(start, end), detailed=True)
                row.reference_s += scored["total"]
                row.missed_s += scored["missed detection"]
                row.false_alarm_s += scored["false alarm"]
                row.confusion_s += scored["confusion"]
            row.reference_frames = int(reference_frames.sum())
            row.count_silent_frames = int(reference_frames[frame_count == 0].sum())
            above = (frame_count > 0) & (reference_frames > frame_count)
            row.count_overlap_frames = int((reference_frames[above] - frame_count[above]).sum())
            extra = frame_count > reference_frames
            row.count_extra_frames = int((frame_count[extra] - reference_frames[extra]).sum())
            rows[(threshold, mode)] = row
    return rows


def markdown(rows: list[FloorRow], dataset: str, *, min_duration_off: float | None = None,
             step: float | None = None, failed: list[str] = ()) -> str:
    bridged = f"same-speaker gaps under {min_duration_off:g} s bridged; " if min_duration_off else ""
    stepped = f"segmentation step {step:g} of the chunk; " if step else ""
    lines = [f"Dataset `{dataset}`: {len(rows[0].files) if rows else 0} files; {stepped}{bridged}DER collar 0, "
             "overlap scored; count columns in % of reference speech frames (the count before gaps are bridged)."]
    lines += [f"Failed, left out: {f}" for f in failed]
    lines += ["",
             "| seg. threshold | clustering | DER | miss | false alarm | confusion | floor (miss + FA) "
             "| count 0 on speech | overlap undercounted | counted over reference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r.threshold:g} | {r.mode} | {r.der:.1f}% | {r.pct(r.missed_s):.1f}% "
                     f"| {r.pct(r.false_alarm_s):.1f}% | {r.pct(r.confusion_s):.1f}% | {r.count_floor:.1f}% "
                     f"| {r.frame_pct(r.count_silent_frames):.1f}% | {r.frame_pct(r.count_overlap_frames):.1f}% "
                     f"| {r.frame_pct(r.count_extra_frames):.1f}% |")
    return "\n".join(lines) + "\n"


def cmd_floor(args: argparse.Namespace) -> int:
    if args.min_duration_off is not None and not 0.0 <= args.min_duration_off <= 5.0:
        raise RunError(f"--min-duration-off {args.min_duration_off}: expected seconds between 0 and 5")
    if args.step is not None and not 0.0 < args.step <= 1.0:
        raise RunError(f"--step {args.step}: expected a fraction of the chunk in (0, 1], e.g. 0.1")
    with warnings.catch_warnings():
        # numpy warns on the empty chunks of silent stretches (pyannote's clustering averages them)
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        rows, failed = floor_dataset(args.dataset, _thresholds(args.thresholds), model_dir=args.model_dir,
                                     limit=args.limit, min_duration_off=args.min_duration_off, step=args.step)
    table = markdown(rows, args.dataset, min_duration_off=args.min_duration_off, step=args.step, failed=failed)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(table)
        tmp.replace(out)
        print(f"written to {out}")
    for failure in failed:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failed else 0
