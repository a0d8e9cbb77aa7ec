"""The cross-attention alignment reuses the transcription's encoder output: same words, no second encode.

Real tiny.en model, the real sample cut into three chunks (transcribed in one batch of four
and aligned in batches of two, so rows cross batch boundaries both ways).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from diarkit import audio as audio_io
from diarkit.models.alignment import WhisperAligner
from diarkit.vad import SpeechChunk

CHUNKS = [SpeechChunk(0.0, 9.5), SpeechChunk(9.5, 21.0), SpeechChunk(21.0, 30.0)]


@pytest.fixture(scope="module")
def samples(sample_wav):
    return audio_io.decode_media(sample_wav)[0]


def without_encoded(texts):
    plain = [copy.copy(t) for t in texts]
    for t in plain:
        t.encoded = None
    return plain


def counting_encodes(whisper, monkeypatch) -> list[int]:
    """Rows the aligner sends to the encoder (the tap stays underneath)."""
    rows: list[int] = []
    encode = whisper.encode

    def counted(features, *args, **kwargs):
        rows.append(len(features))
        return encode(features, *args, **kwargs)

    monkeypatch.setattr(whisper, "encode", counted)
    return rows


def test_kept_encoder_output_gives_the_same_words_without_encoding_again(pipeline, samples, monkeypatch):
    transcriber = pipeline.transcriber
    texts = transcriber(samples, CHUNKS, "en", keep_encoded_bytes=1 << 30)
    assert [t.text for t in texts] and all(t.text for t in texts)
    assert all(t.encoded is not None for t in texts)
    assert {t.encoded.shape for t in texts} == {(1500, 384)}  # tiny.en: 30 s of frames, 384 wide
    plain = without_encoded(texts)

    aligner = WhisperAligner(transcriber, batch_size=2)
    encoded_rows = counting_encodes(transcriber.whisper, monkeypatch)
    reused = aligner(samples, texts, "en")
    assert encoded_rows == []  # nothing encoded again
    assert all(t.encoded is None for t in texts)  # dropped once used
    again = aligner(samples, plain, "en")
    assert encoded_rows == [2, 1]
    assert reused == again and sum(len(w) for w in reused) > 20


def test_a_budget_keeps_the_first_rows_and_the_rest_are_encoded_again(pipeline, samples, monkeypatch):
    transcriber = pipeline.transcriber
    one_row = 1500 * 384 * 4
    texts = transcriber(samples, CHUNKS, "en", keep_encoded_bytes=one_row)
    assert [t.encoded is not None for t in texts] == [True, False, False]
    plain = without_encoded(texts)
    aligner = WhisperAligner(transcriber, batch_size=2)
    encoded_rows = counting_encodes(transcriber.whisper, monkeypatch)
    mixed = aligner(samples, texts, "en")
    assert encoded_rows == [1, 1]  # the first batch encodes only its second chunk
    assert mixed == aligner(samples, plain, "en")


def test_nothing_is_kept_unless_asked(pipeline, samples):
    assert pipeline.transcriber(samples, CHUNKS[:1], "en")[0].encoded is None


def test_the_tap_passes_outputs_only_inside_its_block_and_unchanged(pipeline):
    from diarkit.compat.whisperx import encoder_outputs

    whisper = pipeline.transcriber.whisper
    features = np.random.default_rng(0).standard_normal((2, 80, 3000)).astype(np.float32)
    seen = []
    with encoder_outputs(seen.append):
        inside = np.asarray(whisper.encode(features))
    outside = np.asarray(whisper.encode(features))
    assert len(seen) == 1 and np.array_equal(np.asarray(seen[0]), inside)
    assert inside.shape == (2, 1500, 384) and np.array_equal(outside, inside)
