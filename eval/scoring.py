"""Diarization and transcript scores per file, per group and overall.

Diarization metrics come from pyannote.metrics (optimal Hungarian speaker mapping).
Aggregate rows (group, overall) add up the *components* (seconds, word counts) and
compute ratios from the sums, as md-eval and pyannote's ``abs(metric)`` do; a mean of
per-file ratios would let a 10 s file weigh as much as a 1 h file.

Conventions (stated again in every report):
- ``collar`` is pyannote's: the *total* width removed around each reference boundary
  (collar=0.5 removes 0.25 s each side == md-eval ``-c 0.25``).
- Without a UEM the scored region is the union of the reference and hypothesis extents
  (pyannote's default), with a logged warning.
- Purity and coverage are computed on the same scored region as DER (UEM minus collars
  and, with --skip-overlap, overlap); pyannote itself would ignore the UEM for them.
- JER aggregates as pyannote does: mean of per-speaker JER over all reference speakers.
- Words are normalized (see :func:`normalize_text`) before WER, cpWER and tcpWER.
  WER joins each side's words in time order (speaker-agnostic, so it depends on the
  order of overlapping speech); cpWER/tcpWER are speaker-attributed (meeteval).
  Transcript scores ignore the UEM.
"""

from __future__ import annotations

import logging
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field, fields
from typing import Any

os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

from pyannote.core import Annotation, Segment, Timeline  # noqa: E402
from pyannote.metrics.diarization import (  # noqa: E402
    DiarizationCoverage,
    DiarizationErrorRate,
    DiarizationPurity,
    JaccardErrorRate,
)

from .readers import Document, TextSegment, Turn  # noqa: E402

log = logging.getLogger(__name__)

NO_GROUP = "(no group)"


# ----------------------------------------------------------------------------- text


def normalize_text(text: str) -> str:
    """Lower-case, drop apostrophes (don't -> dont), other punctuation -> space, collapse spaces.

    Unicode-aware (NFKC first, punctuation = Unicode category P*), so accented words survive.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['\u2019\u2018`]", "", text)
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


@dataclass
class WordCounts:
    """Word error counts; ``rate`` is errors / reference words."""

    errors: int = 0
    length: int = 0
    insertions: int = 0
    deletions: int = 0
    substitutions: int = 0

    def __add__(self, other: "WordCounts") -> "WordCounts":
        return WordCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def rate(self) -> float | None:
        if self.length == 0:
            return 0.0 if self.errors == 0 else None
        return self.errors / self.length

    @classmethod
    def from_meeteval(cls, er: Any) -> "WordCounts":
        return cls(int(er.errors), int(er.length), int(er.insertions), int(er.deletions), int(er.substitutions))


def _prepared(segments: list[TextSegment]) -> list[TextSegment]:
    """Normalized, non-empty segments in time order (untimed ones keep file order)."""
    out = [TextSegment(s.speaker, normalize_text(s.words), s.start, s.end) for s in segments]
    out = [s for s in out if s.words]
    if all(s.start is not None for s in out):
        out.sort(key=lambda s: (s.start, s.end))
    return out


def _seglst(uri: str, segments: list[TextSegment], timed: bool):
    from meeteval.io import SegLST

    rows = []
    for s in segments:
        row = {"session_id": uri, "speaker": s.speaker, "words": s.words}
        if timed:
            row.update(start_time=float(s.start), end_time=float(s.end))
        rows.append(row)
    return SegLST(rows)


def score_text(uri: str, ref: list[TextSegment], hyp: list[TextSegment], tcp_collar: float
               ) -> tuple[WordCounts, WordCounts, WordCounts | None]:
    """WER, cpWER and (when both sides are timed) tcpWER of one recording."""
    from meeteval.wer.wer.cp import cp_word_error_rate
    from meeteval.wer.wer.siso import siso_word_error_rate
    from meeteval.wer.wer.time_constrained import time_constrained_minimum_permutation_word_error_rate

    ref, hyp = _prepared(ref), _prepared(hyp)
    wer = WordCounts.from_meeteval(siso_word_error_rate(" ".join(s.words for s in ref),
                                                        " ".join(s.words for s in hyp)))
    timed = all(s.start is not None and s.end is not None for s in ref + hyp)
    sort = "segment" if timed else False
    cp = WordCounts.from_meeteval(cp_word_error_rate(_seglst(uri, ref, timed), _seglst(uri, hyp, timed),
                                                     reference_sort=sort, hypothesis_sort=sort))
    tcp = None
    if timed:
        tcp = WordCounts.from_meeteval(time_constrained_minimum_permutation_word_error_rate(
            _seglst(uri, ref, True), _seglst(uri, hyp, True), collar=tcp_collar))
    return wer, cp, tcp


# ----------------------------------------------------------------------------- rows


def _ratio(num: float, den: float) -> float | None:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else None


@dataclass
class Row:
    """Summable score components of a file, a group or the whole set."""

    level: str  # "file" | "group" | "overall"
    name: str
    files: int = 0
    diar_files: int = 0
    scored: float = 0.0  # seconds of scored region (UEM minus collars / overlap)
    total: float = 0.0  # seconds of reference speech (speaker-weighted: 2 overlapping = 2x)
    correct: float = 0.0
    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0
    jer_speakers: float = 0.0
    jer_error_sum: float = 0.0
    purity_total: float = 0.0
    purity_correct: float = 0.0
    coverage_total: float = 0.0
    coverage_correct: float = 0.0
    ref_speakers: int = 0
    hyp_speakers: int = 0
    speaker_count_exact: int = 0
    text_files: int = 0
    tcp_files: int = 0
    wer: WordCounts | None = None
    cpwer: WordCounts | None = None
    tcpwer: WordCounts | None = None

    def add(self, other: "Row") -> None:
        for f in fields(self):
            if f.name in ("level", "name"):
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("wer", "cpwer", "tcpwer"):
                if theirs is not None:
                    setattr(self, f.name, theirs if mine is None else mine + theirs)
            else:
                setattr(self, f.name, mine + theirs)

    @property
    def errors(self) -> float:
        return self.missed + self.false_alarm + self.confusion

    @property
    def der(self) -> float | None:
        return _ratio(self.errors, self.total) if self.diar_files else None

    def pct(self, seconds: float) -> float | None:
        return None if self.total <= 0 or not self.diar_files else 100.0 * seconds / self.total

    @property
    def jer(self) -> float | None:
        return self.jer_error_sum / self.jer_speakers if self.jer_speakers else None

    @property
    def purity(self) -> float | None:
        return _ratio(self.purity_correct, self.purity_total) if self.purity_total else None

    @property
    def coverage(self) -> float | None:
        return _ratio(self.coverage_correct, self.coverage_total) if self.coverage_total else None

    def to_dict(self) -> dict[str, Any]:
        """Flat, CSV-friendly: seconds (``*_s``) and percentages (``*_pct``)."""
        def pct(x):
            return None if x is None else round(100.0 * x, 4)

        d: dict[str, Any] = {"level": self.level, "name": self.name, "files": self.files,
                             "diar_files": self.diar_files,
                             "der_pct": pct(self.der), "scored_s": round(self.scored, 4),
                             "ref_speech_s": round(self.total, 4)}
        for part in ("correct", "missed", "confusion", "false_alarm"):
            seconds = getattr(self, part)
            d[f"{part}_s"] = round(seconds, 4)
            p = self.pct(seconds)
            d[f"{part}_pct"] = None if p is None else round(p, 4)
        d.update(jer_pct=pct(self.jer), purity_pct=pct(self.purity), coverage_pct=pct(self.coverage),
                 ref_speakers=self.ref_speakers, hyp_speakers=self.hyp_speakers,
                 speaker_count_exact=self.speaker_count_exact, text_files=self.text_files,
                 tcp_files=self.tcp_files)
        for name in ("wer", "cpwer", "tcpwer"):
            counts: WordCounts | None = getattr(self, name)
            d[f"{name}_pct"] = None if counts is None else pct(counts.rate)
            for f in fields(WordCounts):
                d[f"{name}_{f.name}"] = None if counts is None else getattr(counts, f.name)
        return d


# ----------------------------------------------------------------------------- files


@dataclass
class ScoreSettings:
    collar: float = 0.0
    skip_overlap: bool = False
    tcp_collar: float = 5.0

    def describe(self) -> list[str]:
        return [
            f"collar = {self.collar:g} s, pyannote convention: total width removed around each "
            f"reference boundary ({self.collar / 2:g} s each side; md-eval -c {self.collar / 2:g})",
            "overlapping speech " + ("NOT scored (--skip-overlap)" if self.skip_overlap else "scored"),
            "speaker mapping: optimal (Hungarian) one-to-one mapping per file",
            "aggregate rows: components summed over files, then divided (not a mean of per-file ratios)",
            "JER aggregate: mean of per-speaker JER over all reference speakers (pyannote)",
            "purity/coverage: on the DER scored region (UEM minus collars/overlap)",
            "text normalization: NFKC, lower-case, apostrophes dropped, other punctuation -> space, "
            "whitespace collapsed; WER = speaker-agnostic, words joined in time order; "
            f"cpWER/tcpWER by meeteval (tcpWER collar {self.tcp_collar:g} s); transcripts ignore the UEM",
        ]


@dataclass
class FileResult:
    uri: str
    group: str | None
    row: Row
    ref: Document
    hyp: Document
    uem: list[tuple[float, float]] = field(default_factory=list)
    uem_source: str = ""
    mapping: dict[str, str] = field(default_factory=dict)  # hypothesis label -> reference label


@dataclass
class ScoreSet:
    settings: ScoreSettings
    files: list[FileResult]
    groups: list[Row]
    overall: Row
    notes: list[str] = field(default_factory=list)


def to_annotation(turns: list[Turn], uri: str) -> Annotation:
    """Turns -> Annotation, merging overlapping turns of one speaker (they would count twice)."""
    ann = Annotation(uri=uri)
    for i, t in enumerate(turns):
        if t.end > t.start:
            ann[Segment(t.start, t.end), i] = t.speaker
    return ann.support()


def score_file(uri: str, ref: Document, hyp: Document, settings: ScoreSettings,
               uem: list[tuple[float, float]] | None, uem_source: str = "") -> FileResult:
    """All scores of one recording; ``uem=None`` = union of the reference and hypothesis extents."""
    row = Row(level="file", name=uri, files=1)
    result = FileResult(uri=uri, group=None, row=row, ref=ref, hyp=hyp, uem_source=uem_source)
    if ref.turns is not None and hyp.turns is not None:
        R, H = to_annotation(ref.turns, uri), to_annotation(hyp.turns, uri)
        if uem is None:
            extent = R.get_timeline().extent() | H.get_timeline().extent() if (R or H) else None
            uem = [(extent.start, extent.end)] if extent else []
            log.debug("%s: no UEM: scoring the union of reference and hypothesis extents", uri)
            result.uem_source = "union of reference and hypothesis extents (no UEM)"
        uem_tl = Timeline([Segment(s, e) for s, e in uem if e > s], uri=uri).support()
        result.uem = [(s.start, s.end) for s in uem_tl]
        der = DiarizationErrorRate(collar=settings.collar, skip_overlap=settings.skip_overlap)
        c = der.compute_components(R, H, uem=uem_tl)
        row.diar_files = 1
        row.total, row.correct = c["total"], c["correct"]
        row.missed, row.false_alarm, row.confusion = c["missed detection"], c["false alarm"], c["confusion"]
        j = JaccardErrorRate(collar=settings.collar, skip_overlap=settings.skip_overlap
                             ).compute_components(R, H, uem=uem_tl)
        row.jer_speakers, row.jer_error_sum = j["speaker count"], j["speaker error"]
        R2, H2, scored = der.uemify(R, H, uem=uem_tl, collar=settings.collar,
                                    skip_overlap=settings.skip_overlap, returns_uem=True)
        row.scored = scored.duration()
        p = DiarizationPurity().compute_components(R2, H2)
        row.purity_total, row.purity_correct = p["total"], p["correct"]
        cov = DiarizationCoverage().compute_components(R2, H2)
        row.coverage_total, row.coverage_correct = cov["total"], cov["correct"]
        result.mapping = {str(h): str(r) for h, r in der.mapper_(H2, R2).items()}
        row.ref_speakers = len(R.crop(uem_tl).labels())
        row.hyp_speakers = len(H.crop(uem_tl).labels())
        row.speaker_count_exact = int(row.ref_speakers == row.hyp_speakers)
    if ref.text is not None and hyp.text is not None:
        row.wer, row.cpwer, row.tcpwer = score_text(uri, ref.text, hyp.text, settings.tcp_collar)
        row.text_files = 1
        row.tcp_files = int(row.tcpwer is not None)
    return result


def pair_documents(refs: dict[str, Document], hyps: dict[str, Document]
                   ) -> tuple[list[tuple[str, Document, Document]], list[str]]:
    """Match by file id; a reference without hypothesis is scored against an empty one."""
    notes: list[str] = []
    if len(refs) == 1 and len(hyps) == 1 and set(refs) != set(hyps):
        (rid, ref), (hid, hyp) = next(iter(refs.items())), next(iter(hyps.items()))
        log.info("one reference (%s) and one hypothesis (%s): scoring them together", rid, hid)
        return [(rid, ref, hyp)], notes
    pairs = []
    for uri in sorted(refs):
        hyp = hyps.get(uri)
        if hyp is None:
            log.warning("%s: no hypothesis: scored as empty (all speech missed)", uri)
            notes.append(f"{uri}: no hypothesis file; scored as an empty hypothesis")
            hyp = Document(uri=uri, turns=[], text=[], kind="missing")
        pairs.append((uri, refs[uri], hyp))
    extra = sorted(set(hyps) - set(refs))
    if extra:
        log.warning("hypotheses without reference ignored: %s", ", ".join(extra))
        notes.append(f"hypotheses without reference (ignored): {', '.join(extra)}")
    return pairs, notes


def score_corpus(refs: dict[str, Document], hyps: dict[str, Document], settings: ScoreSettings,
                 uem: dict[str, list[tuple[float, float]]] | None = None,
                 durations: dict[str, float] | None = None,
                 groups: dict[str, str] | None = None) -> ScoreSet:
    """Score every reference file. UEM per file: ``uem`` (e.g. --uem) > reference folder
    ``*.uem`` > ``0..durations[uri]`` > union of extents (warned)."""
    pairs, notes = pair_documents(refs, hyps)
    results = []
    for uri, ref, hyp in pairs:
        if uem and uri in uem:
            regions, source = uem[uri], "--uem file"
        elif ref.uem is not None:
            regions, source = ref.uem, "reference .uem file"
        elif durations and uri in durations:
            regions, source = [(0.0, durations[uri])], "0 to file duration"
        else:
            regions, source = None, ""
        if ref.turns is None:
            notes.append(f"{uri}: reference has no speaker turns (text only): no diarization scores")
        elif hyp.turns is None:
            notes.append(f"{uri}: hypothesis has no speaker turns: no diarization scores")
        if ref.text is not None and hyp.text is None:
            notes.append(f"{uri}: hypothesis has no words: no WER")
        results.append(score_file(uri, ref, hyp, settings, regions, source))
    no_uem = [r.uri for r in results if r.uem_source.startswith("union")]
    if no_uem:
        shown = ", ".join(no_uem[:5]) + (", ..." if len(no_uem) > 5 else "")
        log.warning("no UEM for %d file(s) (%s): scored the union of reference and hypothesis extents "
                    "(pyannote default)", len(no_uem), shown)
        notes.append(f"no UEM for {len(no_uem)} file(s): scored region = union of reference and hypothesis "
                     "extents (pyannote default)")
    if uem and set(uem) - set(refs):
        log.debug("UEM entries without reference: %s", ", ".join(sorted(set(uem) - set(refs))))

    group_rows: dict[str, Row] = {}
    if groups is not None:
        ungrouped = [r.uri for r in results if r.uri not in groups]
        if ungrouped:
            log.warning("files missing from the groups file: %s", ", ".join(ungrouped))
            notes.append(f"files not in the groups file (group {NO_GROUP!r}): {', '.join(ungrouped)}")
        for r in results:
            r.group = groups.get(r.uri, NO_GROUP)
            group_rows.setdefault(r.group, Row(level="group", name=r.group)).add(r.row)
    overall = Row(level="overall", name="OVERALL")
    for r in results:
        overall.add(r.row)
    return ScoreSet(settings=settings, files=results,
                    groups=[group_rows[g] for g in sorted(group_rows)], overall=overall, notes=notes)


def error_regions(result: FileResult, settings: ScoreSettings | None = None
                  ) -> dict[str, list[tuple[float, float]]]:
    """Where misses, false alarms and confusions happen (for plots), within the scored region
    (same collar/overlap settings as the DER, so the marked time adds up to its parts)."""
    settings = settings or ScoreSettings()
    out: dict[str, list[tuple[float, float]]] = {"missed": [], "false_alarm": [], "confusion": []}
    if result.ref.turns is None or result.hyp.turns is None:
        return out
    uri = result.uri
    R, H = to_annotation(result.ref.turns, uri), to_annotation(result.hyp.turns, uri)
    # mapped hypothesis speakers take the reference name; unmapped ones must not collide with one
    H = H.rename_labels(mapping={h: result.mapping.get(str(h), f"\x00{h}") for h in H.labels()})
    der = DiarizationErrorRate(collar=settings.collar, skip_overlap=settings.skip_overlap)
    uem_tl = Timeline([Segment(s, e) for s, e in result.uem], uri=uri)
    R2, H2, timeline = der.uemify(R, H, uem=uem_tl, collar=settings.collar,
                                  skip_overlap=settings.skip_overlap, returns_timeline=True)
    for seg in timeline:
        r = set(map(str, R2.get_labels(seg)))
        h = set(map(str, H2.get_labels(seg)))
        correct = len(r & h)
        kinds = {"missed": max(0, len(r) - len(h)), "false_alarm": max(0, len(h) - len(r)),
                 "confusion": min(len(r), len(h)) - correct}
        for kind, n in kinds.items():
            if n > 0 and seg.duration > 0:
                regions = out[kind]
                if regions and math.isclose(regions[-1][1], seg.start, abs_tol=1e-9):
                    regions[-1] = (regions[-1][0], seg.end)
                else:
                    regions.append((seg.start, seg.end))
    return out
