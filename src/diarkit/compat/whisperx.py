"""whisperx: model loading, its batched pipeline, its VAD helpers and alignment (3.8.x)."""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import Callable

import whisperx
from whisperx.audio import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram
from whisperx.diarize import Segment as VadSegment
from whisperx.vads.pyannote import Binarize
from whisperx.vads.vad import Vad

__all__ = ["N_SAMPLES", "SAMPLE_RATE", "Binarize", "Vad", "VadSegment", "align", "encoder_outputs",
           "load_align_model", "load_model", "log_mel_spectrogram", "merge_vad_chunks", "tap_encoder"]

#: attributes of the object ``load_model`` returns that diarkit uses (checked by the tests)
PIPELINE_ATTRIBUTES = ("model", "tokenizer", "detect_language", "__call__")

#: NLTK's English punkt_tab, shipped with diarkit (scripts/make_punkt_tab.py): ``whisperx.align``
#: splits sentences with it and would otherwise call ``nltk.download`` (network)
NLTK_DATA = Path(__file__).resolve().parent.parent / "assets" / "nltk_data"


def use_shipped_punkt() -> None:
    """Put the shipped punkt_tab first on NLTK's path. NLTK is imported here, when wav2vec2
    alignment is loaded, not at start-up: it is 1-3 s of import that the bundled profile
    (Whisper alignment) never uses."""
    import nltk

    if str(NLTK_DATA) not in nltk.data.path:
        nltk.data.path.insert(0, str(NLTK_DATA))


def load_align_model(*args, **kwargs):
    use_shipped_punkt()
    return whisperx.load_align_model(*args, **kwargs)


def align(*args, **kwargs):
    use_shipped_punkt()
    return whisperx.align(*args, **kwargs)


def load_model(path: str, device: str, **kwargs):
    """``whisperx.load_model``, without the notice it prints on stdout.

    The notice ("Use manually assigned vad_model...") comes from one ``print`` in
    ``whisperx.asr.load_model``; models load one at a time under the pipeline's lock, so
    the short redirect cannot swallow another thread's output of a request.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        return whisperx.load_model(path, device, **kwargs)


def merge_vad_chunks(regions, chunk_size: float, onset: float, offset: float) -> list[dict]:
    """whisperx's cut of speech regions into <= chunk_size chunks (what WhisperX publishes)."""
    return Vad.merge_chunks([VadSegment(r.start, r.end, "UNKNOWN") for r in regions], chunk_size, onset, offset)


_tap = threading.local()


def tap_encoder(whisper) -> None:
    """Let ``encoder_outputs`` see what the Whisper model's encoder returns (installed once).

    whisperx's batched transcription encodes each batch of chunks inside
    ``generate_segment_batched`` (``self.encode(features)``) and keeps nothing; the
    cross-attention alignment needs the same encoder output again. The tap passes each output
    to the calling thread's sink, when one is open, and returns it unchanged.
    """
    if getattr(whisper, "_diarkit_tap", False):
        return
    encode = whisper.encode

    def tapped(features, *args, **kwargs):
        output = encode(features, *args, **kwargs)
        sink = getattr(_tap, "sink", None)
        if sink is not None:
            sink(output)
        return output

    whisper.encode = tapped
    whisper._diarkit_tap = True


@contextlib.contextmanager
def encoder_outputs(sink: Callable[[object], None]):
    """Within the block, every encoder output of a tapped model on this thread goes to ``sink``."""
    _tap.sink = sink
    try:
        yield
    finally:
        _tap.sink = None
