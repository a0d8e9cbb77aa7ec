"""Speech gate: frames where nobody speaks are taken out of the shared segmentation.

Why: the pyannote segmentation model answers "which local speaker is active" and fires on
music and sound effects (scores, stingers, doors), so music became speaker turns and often
an extra speaker. The silero VAD (packaged with faster-whisper) tells speech from music
much better (eval/RESULTS.md, issue 20). Its decision multiplies the segmentation's
activations before anything reads them, so one gated segmentation feeds both Whisper's
chunks (``diarkit.vad``) and diarization (binarization, speaker count per frame and the
embedding masks): a music frame is neither a turn, nor a chunk, nor part of an embedding.
Each model still runs once per file.

The silero model is a packaged asset of the pinned faster-whisper, loaded by path, not a
model-directory artifact: it is a 2 MB file that every install already has, and existing
model directories keep working unchanged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

import numpy as np
from diarkit.compat.faster_whisper import SILERO_VAD_PATH, SILERO_WINDOW, SileroVADModel, silero_probabilities
from diarkit.compat.pyannote import SlidingWindowFeature

from diarkit.audio import SAMPLE_RATE
from diarkit.models.segmentation import Segmentation
from diarkit.result import SpeakerTurn

logger = logging.getLogger(__name__)

#: seconds per silero frame
SILERO_STEP = SILERO_WINDOW / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechGateOptions:
    """The fused speech decision (chosen in eval/RESULTS.md, issue 20).

    Two tiers, OR-ed:

    * strict: silero hysteresis (``onset``/``offset``) with ``pad`` and ``min_gap``, confident speech;
    * weak support: far-field meeting speech (AMI) often gets silero probabilities of 0.05-0.3,
      which the strict tier drops (it kept only ~90% of the AMI speech that the segmentation
      finds, DER +3.7 points), while music and effects stay near 0. A frame is also kept when
      silero reaches ``support`` somewhere within ``support_window`` seconds around it AND the
      frame lies in a contiguous region of segmentation speech (aggregated probability >= 0.5)
      in which at least ``region_support`` of the frames reach ``support``. The window keeps
      low-probability speech next to weak evidence; the region condition drops segmentation
      activity (music) that silero leaves near zero for most of its length.

    The weak tier lets some music through (20 s of music alone gave one speaker and Whisper wrote
    "Yeah, yeah." into it); two checks after diarization take it back out: a speaker with under
    ``min_confident_speech`` seconds and ``min_confident_share`` of its turns' time of
    confident speech is dropped (``confirm_speakers``), and words in no turn and no confident stretch are dropped
    (``unsupported_words``). ``support=None`` gives the strict tier alone (AMI DER +3.7 points).
    """

    onset: float = 0.5  # a speech region starts when the probability reaches this
    offset: float = 0.35  # and ends when it falls under this
    pad: float = 0.2  # seconds kept on each side of a speech region
    min_gap: float = 0.3  # non-speech shorter than this between two regions is kept as speech
    support: float | None = 0.05  # silero probability that counts as weak evidence; None = strict tier only
    support_window: float = 1.0  # seconds (total width) around a frame searched for weak evidence
    region_support: float = 0.3  # share of a segmentation speech region's frames that must show weak evidence
    #: a diarized speaker whose turns hold less than ``min_confident_speech`` seconds of confident
    #: speech (silero >= ``onset``, unpadded) AND for whom that is under ``min_confident_share`` of
    #: its turns' time is not a speaker: its turns are dropped. Measured (eval/RESULTS.md): music
    #: speakers the weak tier let through hold 0.00-0.22 s, 0-8% of their turns; quiet real speech
    #: can hold as little (the sample's first 8 s: 0.35 s) but as a large share (~40%); seconds
    #: alone could not separate them (0.5 s dropped the sample, 0.1 s kept a music speaker).
    #: 0 turns the check off.
    min_confident_speech: float = 0.5
    min_confident_share: float = 0.2
    #: speaker embeddings read the segmentation before the gate (the turns still come from the
    #: gated one). Measured (eval/RESULTS.md): mixed, so off: bed -0.9 to -1.3 and effects
    #: -0.9 DER on some sets, but AMI +0.5 (+0.8 over no gate) and a music speaker on 1 of 6 gaps files
    embed_ungated: bool = False


def hysteresis(probs: np.ndarray, onset: float, offset: float) -> np.ndarray:
    """Boolean speech per frame: on at ``onset``, off under ``offset``."""
    active = np.zeros(len(probs), dtype=bool)
    on = False
    for i, p in enumerate(probs):
        on = p >= offset if on else p >= onset
        active[i] = on
    return active


def speech_mask(probs: np.ndarray, options: SpeechGateOptions) -> np.ndarray:
    """Silero frame probabilities -> boolean speech per frame, with padding and short gaps filled."""
    active = hysteresis(probs, options.onset, options.offset)
    pad = int(round(options.pad / SILERO_STEP))
    min_gap = int(round(options.min_gap / SILERO_STEP))
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    mask = np.zeros_like(active)
    previous_end = None
    for start, end in zip(starts, ends):
        start, end = max(0, start - pad), min(len(mask), end + pad)
        if previous_end is not None and start - previous_end < min_gap:
            start = previous_end
        mask[start:end] = True
        previous_end = end
    return mask


def support_mask(probs: np.ndarray, segmentation_speech: np.ndarray, options: SpeechGateOptions) -> np.ndarray:
    """The weak tier: silero >= ``support`` within the window AND enough support in the segmentation region.

    ``segmentation_speech`` is the segmentation's speech probability per silero frame.
    """
    n = len(probs)
    if options.support is None or n == 0:
        return np.zeros(n, dtype=bool)
    from scipy.ndimage import label, maximum_filter1d

    evidence = probs >= options.support
    width = max(1, int(round(options.support_window / SILERO_STEP)))
    near = maximum_filter1d(evidence.astype(np.int8), width).astype(bool)
    regions, count = label(np.asarray(segmentation_speech[:n]) >= 0.5)
    if count == 0:
        return np.zeros(n, dtype=bool)
    supported = np.bincount(regions, weights=evidence, minlength=count + 1)
    size = np.bincount(regions, minlength=count + 1)
    ok = supported / np.maximum(size, 1) >= options.region_support
    ok[0] = False  # frames outside every region
    return near & ok[regions]


def fused_mask(probs: np.ndarray, segmentation_speech: np.ndarray | None, options: SpeechGateOptions) -> np.ndarray:
    """Strict silero speech OR weak silero support inside segmentation speech (see SpeechGateOptions)."""
    mask = speech_mask(probs, options)
    if segmentation_speech is not None and options.support is not None:
        mask |= support_mask(probs, segmentation_speech, options)
    return mask


def segmentation_speech_per_frame(segmentation: Segmentation, num_frames: int) -> np.ndarray:
    """The (ungated) segmentation's aggregated speech probability at each silero frame's centre."""
    from diarkit.vad import speech_probability

    scores = speech_probability(segmentation)
    window = scores.sliding_window
    data = np.nan_to_num(np.asarray(scores.data)[:, 0])
    if num_frames == 0 or len(data) == 0:
        return np.zeros(num_frames, dtype=np.float32)
    t = (np.arange(num_frames) + 0.5) * SILERO_STEP
    index = np.floor((t - window.start - window.duration / 2) / window.step + 0.5).astype(int)
    return data[np.clip(index, 0, len(data) - 1)]


@dataclass
class SpeechDecision:
    """One file's silero probabilities and the fused mask made from them (kept for the speaker check)."""

    probs: np.ndarray
    mask: np.ndarray


_DEFAULT_LABEL = re.compile(r"SPEAKER_\d+")


def confident_seconds(turns: list[SpeakerTurn], probs: np.ndarray, onset: float) -> dict[str, tuple[float, float]]:
    """Per speaker: (seconds of confident silero speech (>= ``onset``) inside its turns, seconds of its turns)."""
    confident = np.asarray(probs) >= onset
    covered: dict[str, np.ndarray] = {}
    talk: dict[str, float] = {}
    for turn in turns:
        inside = covered.setdefault(turn.speaker, np.zeros(len(confident), dtype=bool))
        inside[int(turn.start / SILERO_STEP):int(np.ceil(turn.end / SILERO_STEP))] = True
        talk[turn.speaker] = talk.get(turn.speaker, 0.0) + turn.end - turn.start
    return {speaker: (float((inside & confident).sum() * SILERO_STEP), talk[speaker])
            for speaker, inside in covered.items()}


def confirm_speakers(diarization, decision: SpeechDecision, options: SpeechGateOptions, *,
                     num_speakers: int | None = None, min_speakers: int | None = None, **_):
    """The diarization without speakers that never speak confidently (music the weak tier let through).

    Never goes under the speakers a request asked for. Default labels stay consecutive
    (SPEAKER_00, SPEAKER_01, ... in their old order); the speaker embeddings follow.
    """
    if not options.min_confident_speech or not diarization.turns:
        return diarization
    measured = confident_seconds(diarization.turns, decision.probs, options.onset)
    seconds = {speaker: confident for speaker, (confident, _) in measured.items()}
    labels = sorted(seconds)
    dropped = sorted((s for s, (confident, talk) in measured.items() if confident < options.min_confident_speech
                      and confident < options.min_confident_share * talk), key=seconds.get)
    floor = num_speakers or min_speakers or 0
    dropped = set(dropped[:max(0, len(labels) - floor)])
    if not dropped:
        return diarization
    kept = [s for s in labels if s not in dropped]
    rename = {s: (f"SPEAKER_{i:02d}" if all(_DEFAULT_LABEL.fullmatch(k) for k in kept) else s)
              for i, s in enumerate(kept)}
    logger.info("speech gate: %d speaker(s) with under %.1f s (and %.0f%% of their turns) of confident speech "
                "dropped: %s", len(dropped), options.min_confident_speech, 100 * options.min_confident_share,
                ", ".join(f"{s} ({seconds[s]:.2f} s)" for s in sorted(dropped)))

    def keep(turns):
        return [replace(t, speaker=rename[t.speaker]) for t in turns if t.speaker in rename]

    embeddings = diarization.speaker_embeddings
    if embeddings is not None and len(embeddings) == len(labels):
        embeddings = embeddings[[labels.index(s) for s in kept]]
    return replace(diarization, turns=keep(diarization.turns), exclusive_turns=keep(diarization.exclusive_turns),
                   speaker_embeddings=embeddings,
                   rejected_turns=[t for t in diarization.turns if t.speaker in dropped])


def unsupported_words(words: list, decision: SpeechDecision, turns: list[SpeakerTurn],
                      rejected: list[SpeakerTurn], options: SpeechGateOptions) -> list:
    """The words that are Whisper writing into music, to be dropped.

    A word is unsupported when its middle lies in no kept speaker's turn, the stretch of kept
    speech around it (the gate mask's run, or 0.5 s either side outside the mask) holds not one
    confident frame (silero >= ``onset``): only the weak tier kept it, AND that stretch holds a
    turn of a speaker ``confirm_speakers`` rejected (music). tiny.en writes "Yeah, yeah." into
    music the weak tier keeps. Without the last condition every word of 10 s of quiet real
    speech went whose (random stand-in) diarization gave no turn under them.
    """
    if not options.min_confident_speech or not words or not rejected:
        return []
    confident = np.asarray(decision.probs) >= options.onset
    mask = decision.mask
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # run k: frames [start, end)
    runs = np.cumsum(edges[:-1] == 1) * mask  # run id (k + 1) per frame, 0 outside
    run_confident = np.bincount(runs, weights=confident, minlength=len(run_starts) + 1) * SILERO_STEP
    out = []
    for word in words:
        middle = (word.start + word.end) / 2
        if any(t.start <= middle <= t.end for t in turns):
            continue
        frame = min(int(middle / SILERO_STEP), len(mask) - 1)
        if frame >= 0 and runs[frame]:
            run = runs[frame]
            start, end = run_starts[run - 1] * SILERO_STEP, run_ends[run - 1] * SILERO_STEP
            seconds = run_confident[run]
        else:
            start, end = max(0.0, word.start - 0.5), word.end + 0.5
            seconds = confident[int(start / SILERO_STEP):int(end / SILERO_STEP) + 1].sum() * SILERO_STEP
        if seconds == 0 and any(t.start < end and t.end > start for t in rejected):
            out.append(word)
    return out


def drop_unsupported_words(words: list, decision: SpeechDecision, diarization, options: SpeechGateOptions,
                           uri: str = "audio") -> list:
    """``words`` without the unsupported ones (see ``unsupported_words``), logged."""
    dropped = unsupported_words(words, decision, diarization.turns, diarization.rejected_turns, options)
    if not dropped:
        return words
    logger.info("%s: %d word(s) outside every speaker turn and confident speech dropped (music): %s",
                uri, len(dropped), " ".join(w.word for w in dropped)[:200])
    gone = {id(w) for w in dropped}
    return [w for w in words if id(w) not in gone]


class SileroSpeech:
    """Silero VAD v6 speech probability per 32 ms frame of 16 kHz audio."""

    name = "silero-vad-v6"

    def __init__(self, path: str = SILERO_VAD_PATH):
        self.model = SileroVADModel(path)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if audio.size == 0:
            return np.zeros(0, dtype=np.float32)
        return silero_probabilities(self.model, audio)  # pads only its last batch: no copy of the file


def gate_segmentation(segmentation: Segmentation, mask: np.ndarray, *, keep_ungated: bool = False) -> Segmentation:
    """The segmentation (and a powerset model's speech probability) with every output frame whose centre falls in non-speech set to 0.

    ``keep_ungated``: the result also carries the chunks as they were, for the speaker embeddings.
    """
    chunks = segmentation.chunks
    num_chunks, num_frames, _ = chunks.data.shape
    starts = np.array([chunks.sliding_window[c].start for c in range(num_chunks)])
    middles = np.array([segmentation.frames[f].middle for f in range(num_frames)])
    index = np.floor((starts[:, None] + middles[None, :]) / SILERO_STEP).astype(int)
    keep = mask[np.clip(index, 0, len(mask) - 1)] if len(mask) else np.zeros(index.shape, dtype=bool)
    data = chunks.data * keep[:, :, None].astype(chunks.data.dtype)
    gated = replace(segmentation, chunks=SlidingWindowFeature(data, chunks.sliding_window),
                    ungated=chunks if keep_ungated else None)
    if segmentation.speech is not None:  # a powerset model's own speech probability feeds the VAD
        speech = segmentation.speech
        gated.speech = SlidingWindowFeature(speech.data * keep[:, :, None].astype(speech.data.dtype),
                                            speech.sliding_window)
    return gated


class SpeechGate:
    """Runs silero once per file and gates the shared segmentation with the fused decision (the segmentation is not rerun)."""

    def __init__(self, options: SpeechGateOptions | None = None, detector: SileroSpeech | None = None):
        self.options = options or SpeechGateOptions()
        self.detector = detector or SileroSpeech()

    def decide(self, audio: np.ndarray, segmentation: Segmentation) -> SpeechDecision:
        """Silero once over the file, fused with the (ungated) segmentation's speech."""
        probs = self.detector(audio)
        seg_speech = segmentation_speech_per_frame(segmentation, len(probs)) if self.options.support is not None else None
        mask = fused_mask(probs, seg_speech, self.options)
        logger.debug("speech gate: %.1f of %.1f s kept", mask.sum() * SILERO_STEP, len(mask) * SILERO_STEP)
        return SpeechDecision(probs=probs, mask=mask)

    def confirm(self, diarization, decision: SpeechDecision, **speaker_hints):
        """The diarization without speakers that have no confident speech (see ``confirm_speakers``)."""
        return confirm_speakers(diarization, decision, self.options, **speaker_hints)
