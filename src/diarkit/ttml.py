"""TTML in the IMSC1 text profile, written and read back with ttconv.

Why ttconv: it is the reference IMSC implementation behind several delivery pipelines
(reading, writing and conversion), so the document model, the time expressions (frames
at the media's rate) and the profile signalling are the library's, not ours. Speakers
are carried as ``ttm:agent`` (TTML's own metadata for who speaks a paragraph), added to
ttconv's tree after writing because its model has no metadata vocabulary.
"""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as et
from dataclasses import dataclass
from fractions import Fraction

from ttconv import model
from ttconv import style_properties as styles
from ttconv.imsc import config as imsc_config
from ttconv.imsc import reader as imsc_reader
from ttconv.imsc import writer as imsc_writer
from ttconv.imsc.designators import IMSC_11_TEXT_PROFILE_DESIGNATOR

from diarkit.result import TranscriptResult
from diarkit.subtitles import SubtitleTrack, track_for

logger = logging.getLogger(__name__)

TTML_NS = "http://www.w3.org/ns/ttml"
TTM_NS = "http://www.w3.org/ns/ttml#metadata"
TTP_NS = "http://www.w3.org/ns/ttml#parameter"
XML_NS = "http://www.w3.org/XML/1998/namespace"
SAFE_AREA_PCT = 10  # the region leaves a 10% title-safe margin on each side


def _agent_id(speaker: str) -> str:
    """An xml:id (an NCName) for a speaker label."""
    cleaned = "".join(c if c.isalnum() or c in "_-." else "_" for c in speaker)
    return f"speaker_{cleaned}"


def build_document(track: SubtitleTrack, language: str | None) -> model.ContentDocument:
    doc = model.ContentDocument()
    doc.set_lang(language or "en")
    doc.set_content_profiles({IMSC_11_TEXT_PROFILE_DESIGNATOR})
    region = model.Region("bottom", doc)
    region.set_style(styles.StyleProperties.Origin, styles.CoordinateType(
        x=styles.LengthType(SAFE_AREA_PCT, styles.LengthType.Units.pct),
        y=styles.LengthType(SAFE_AREA_PCT, styles.LengthType.Units.pct)))
    region.set_style(styles.StyleProperties.Extent, styles.ExtentType(
        width=styles.LengthType(100 - 2 * SAFE_AREA_PCT, styles.LengthType.Units.pct),
        height=styles.LengthType(100 - 2 * SAFE_AREA_PCT, styles.LengthType.Units.pct)))
    region.set_style(styles.StyleProperties.DisplayAlign, styles.DisplayAlignType.after)
    region.set_style(styles.StyleProperties.TextAlign, styles.TextAlignType.center)
    doc.put_region(region)
    body = model.Body(doc)
    body.set_region(region)
    doc.set_body(body)
    div = model.Div(doc)
    body.push_child(div)
    for event in track.events:
        p = model.P(doc)
        p.set_begin(Fraction(event.start) / track.rate.fps)
        p.set_end(Fraction(event.end) / track.rate.fps)
        for n, line in enumerate(event.lines):
            if n:
                p.push_child(model.Br(doc))
            span = model.Span(doc)
            text = model.Text(doc, line)
            span.push_child(text)
            p.push_child(span)
        div.push_child(p)
    return doc


def to_ttml(result: TranscriptResult) -> str:
    track = track_for(result)
    document = build_document(track, result.language)
    config = imsc_config.IMSCWriterConfiguration(
        fps=track.rate.fps, profile_signaling=imsc_config.ContentProfilesSignaling.CONTENT_PROFILES)
    tree = imsc_writer.from_model(document, config)
    _add_agents(tree.getroot(), track)
    et.register_namespace("ttm", TTM_NS)
    buffer = io.BytesIO()
    tree.write(buffer, encoding="utf-8", xml_declaration=True)
    return buffer.getvalue().decode("utf-8") + "\n"


def _add_agents(root: et.Element, track: SubtitleTrack) -> None:
    """``ttm:agent`` per speaker in the head, ``ttm:agent`` on each paragraph (space-separated
    for two speakers), in event order: ttconv writes one ``p`` per event, in order."""
    speakers = sorted({s for e in track.events for s in e.speakers if s})
    if not speakers:
        return
    head = root.find(f"{{{TTML_NS}}}head")
    if head is None:
        head = et.Element(f"{{{TTML_NS}}}head")
        root.insert(0, head)
    metadata = et.Element(f"{{{TTML_NS}}}metadata")
    for speaker in speakers:
        agent = et.SubElement(metadata, f"{{{TTM_NS}}}agent", {f"{{{XML_NS}}}id": _agent_id(speaker),
                                                                "type": "character"})
        name = et.SubElement(agent, f"{{{TTM_NS}}}name", {"type": "full"})
        name.text = speaker
    head.insert(0, metadata)
    paragraphs = list(root.iter(f"{{{TTML_NS}}}p"))
    if len(paragraphs) != len(track.events):  # never expected: ttconv writes one p per event
        logger.warning("TTML has %d paragraphs for %d events: speakers left out", len(paragraphs),
                       len(track.events))
        return
    for p, event in zip(paragraphs, track.events):
        agents = " ".join(dict.fromkeys(_agent_id(s) for s in event.speakers if s))
        if agents:
            p.set(f"{{{TTM_NS}}}agent", agents)


# -- validation ---------------------------------------------------------------------------
@dataclass
class ImscCheck:
    problems: list[str]
    document: model.ContentDocument | None

    @property
    def ok(self) -> bool:
        return not self.problems


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def validate_imsc_text(data: bytes | str) -> ImscCheck:
    """Read a TTML document with ttconv's IMSC reader; every warning or error it logs is a
    problem, and the document must declare the IMSC 1.1 text profile and a frame rate."""
    problems: list[str] = []
    try:
        root = et.fromstring(data.encode("utf-8") if isinstance(data, str) else data)
    except et.ParseError as exc:
        return ImscCheck([f"not well-formed XML: {exc}"], None)
    if root.tag != f"{{{TTML_NS}}}tt":
        problems.append(f"root element is {root.tag}, not tt")
    profiles = (root.get(f"{{{TTP_NS}}}contentProfiles") or "").split()
    if IMSC_11_TEXT_PROFILE_DESIGNATOR not in profiles:
        problems.append(f"ttp:contentProfiles does not name {IMSC_11_TEXT_PROFILE_DESIGNATOR}")
    if root.find(f".//{{{TTML_NS}}}image") is not None or root.find(".//{*}backgroundImage") is not None:
        problems.append("the text profile allows no images")
    collector = _Collect()
    ttconv_logger = logging.getLogger("ttconv")
    ttconv_logger.addHandler(collector)
    try:
        document = imsc_reader.to_model(et.ElementTree(root))
    except Exception as exc:  # noqa: BLE001 - the reader's own failure is the answer
        document = None
        problems.append(f"ttconv cannot read it: {type(exc).__name__}: {exc}")
    finally:
        ttconv_logger.removeHandler(collector)
    problems.extend(f"ttconv: {message}" for message in collector.messages)
    if document is None and not problems:
        problems.append("ttconv read no document")
    return ImscCheck(problems, document)
