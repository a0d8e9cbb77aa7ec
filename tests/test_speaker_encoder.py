"""The speaker encoder's file-wide spectrogram: chunks find their place in the file even
after the chunks the encoder skips, and give the embeddings they give on their own."""

import numpy as np
import pytest
import torch

from diarkit import audio as audio_io
from diarkit.models.embedding import ResemblyzerEncoder

STEP = 8000  # pyannote's chunk step on the bundled segmentation: 0.5 s
CHUNK = 80000  # 5 s


@pytest.fixture(scope="module")
def encoder(model_dir):
    return ResemblyzerEncoder(model_dir / "embedding" / "resemblyzer.pt")


def chunk_rows(samples: np.ndarray, starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """pyannote's rows: each chunk once per local speaker (here: the whole chunk, then its first half)."""
    waves, masks = [], []
    for start in starts:
        piece = samples[start:start + CHUNK]
        for mask in (np.ones(293, np.float32), np.r_[np.ones(146), np.zeros(147)].astype(np.float32)):
            waves.append(torch.from_numpy(np.ascontiguousarray(piece))[None])
            masks.append(torch.from_numpy(mask))
    return torch.stack(waves), torch.stack(masks)


def test_chunks_after_skipped_ones_use_the_file_spectrogram(encoder, sample_wav):
    samples, _ = audio_io.decode_media(sample_wav)
    # chunk 0, then 3 steps on (a pause the encoder skipped), then back to an earlier one
    starts = [0, 3 * STEP, 7 * STEP, 2 * STEP]
    waves, masks = chunk_rows(samples, starts)
    alone = encoder(waves, masks=masks)
    found = []
    with encoder.file_features(samples, STEP):
        cache = encoder._file
        for i, start in enumerate(starts):
            shared = encoder(waves[2 * i:2 * i + 2], masks=masks[2 * i:2 * i + 2])
            found.append(cache.offset)
            np.testing.assert_allclose(shared, alone[2 * i:2 * i + 2], atol=2e-3)
    assert found == starts  # each chunk was located in the file, not computed on its own
    assert not np.isnan(alone).any()


def test_a_waveform_that_is_no_chunk_of_the_file_gets_its_own_features(encoder, sample_wav):
    samples, _ = audio_io.decode_media(sample_wav)
    other = np.ascontiguousarray(samples[STEP // 2:STEP // 2 + CHUNK][::-1])  # not on the grid, reversed
    with encoder.file_features(samples, STEP):
        assert encoder._file.locate(other) is None
        shared = encoder(torch.from_numpy(other)[None, None], masks=None)
    alone = encoder(torch.from_numpy(other)[None, None], masks=None)
    np.testing.assert_allclose(shared, alone, atol=1e-6)
