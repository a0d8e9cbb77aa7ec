"""Every third-party symbol diarkit relies on, imported through its one compatibility module.

An upgrade of whisperx, faster-whisper, pyannote, resemblyzer or uvicorn that moves or
renames something fails here, naming it, instead of somewhere in the middle of a request.
"""

from __future__ import annotations

import importlib

import pytest

MODULES = ["whisperx", "faster_whisper", "pyannote", "resemblyzer", "uvicorn", "torchaudio"]


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_symbol_imports(name):
    module = importlib.import_module(f"diarkit.compat.{name}")
    missing = [symbol for symbol in module.__all__ if not hasattr(module, symbol)]
    assert not missing, f"diarkit.compat.{name} lacks {missing}"


def test_the_attributes_diarkit_uses_exist():
    from diarkit.compat import faster_whisper, pyannote, resemblyzer, uvicorn, whisperx

    checks = [
        (pyannote.SpeakerDiarization, pyannote.SPEAKER_DIARIZATION_ATTRIBUTES),
        (uvicorn.Server, ("capture_signals", "handle_exit", "run")),
        (pyannote.Inference, ("aggregate",)),
        (pyannote.AgglomerativeClustering, ("__call__", "expects_num_clusters")),
        (whisperx.Vad, ("merge_chunks",)),
        (pyannote.Powerset, ("to_multilabel",)),
        (pyannote.PLDA, ("from_pretrained", "__call__")),
    ]
    import faster_whisper as fw
    import whisperx.asr as wx_asr

    checks.append((fw.WhisperModel, [a for a in faster_whisper.WHISPER_MODEL_ATTRIBUTES
                                     if a not in ("feat_kwargs", "frames_per_second", "feature_extractor",
                                                  "hf_tokenizer", "model")]))
    checks.append((wx_asr.FasterWhisperPipeline, [a for a in whisperx.PIPELINE_ATTRIBUTES
                                                  if a not in ("model", "tokenizer")]))
    for owner, names in checks:
        missing = [n for n in names if not hasattr(owner, n)]
        assert not missing, f"{owner.__qualname__} lacks {missing}"


def test_loaded_models_have_the_instance_attributes(pipeline):
    """Attributes set in constructors can only be checked on loaded models."""
    from diarkit.compat import faster_whisper, resemblyzer, whisperx

    asr = pipeline.transcriber.pipeline
    assert all(hasattr(asr, n) for n in whisperx.PIPELINE_ATTRIBUTES)
    assert all(hasattr(asr.model, n) for n in faster_whisper.WHISPER_MODEL_ATTRIBUTES)
    encoder = getattr(pipeline.encoder, "model", None)
    if isinstance(encoder, resemblyzer.VoiceEncoder):
        assert all(hasattr(encoder, n) for n in resemblyzer.VOICE_ENCODER_ATTRIBUTES)


def test_production_profile_internals():
    """What the large-v2 / large-v3 loaders rely on: torchaudio's bundle file name, a powerset
    model's specifications, and whisperx.align's punkt_tab found offline in diarkit's assets."""
    import torchaudio as ta
    from nltk.data import find

    from diarkit.compat import pyannote, torchaudio, whisperx
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    bundle = ta.pipelines.WAV2VEC2_ASR_BASE_960H
    assert all(hasattr(bundle, n) for n in torchaudio.BUNDLE_ATTRIBUTES)
    assert torchaudio.bundle_file("WAV2VEC2_ASR_BASE_960H") == "wav2vec2_fairseq_base_ls960_asr_ls960.pth"
    specs = Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=10.0,
                           classes=["a", "b", "c"], powerset_max_classes=2)
    assert all(hasattr(specs, n) for n in pyannote.POWERSET_SPECIFICATION_ATTRIBUTES) and specs.powerset
    whisperx.use_shipped_punkt()  # what load_align_model and align do first
    assert str(whisperx.NLTK_DATA) in find("tokenizers/punkt_tab/english/abbrev_types.txt")


def test_shipped_punkt_tab_is_what_the_pinned_package_gives():
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_punkt_tab.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_silero_probabilities_in_small_batches_equal_faster_whispers_own_call():
    """diarkit runs silero in bounded batches (memory); the probabilities must not change."""
    import numpy as np

    from diarkit.compat.faster_whisper import SILERO_VAD_PATH, SileroVADModel, silero_probabilities

    rng = np.random.default_rng(0)
    t = np.arange(512 * 300) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
             + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)
    model = SileroVADModel(SILERO_VAD_PATH)
    expected = np.asarray(model(audio.copy())).reshape(-1)
    for batch in (7, 64, 10000):
        assert np.array_equal(silero_probabilities(model, audio, batch), expected)
    # a length that is not whole frames: as faster-whisper's call on the file padded with zeros,
    # without that padded copy of the file (only the last batch is padded)
    cut = audio[:512 * 299 + 100]
    expected = np.asarray(model(np.pad(cut, (0, 412)))).reshape(-1)
    assert expected.shape == (300,)
    for batch in (7, 64, 299, 300, 10000):
        assert np.array_equal(silero_probabilities(model, cut, batch), expected)
    with pytest.raises(ValueError):
        silero_probabilities(model, audio.reshape(2, -1))


def test_pyannote_clustering_links_through_the_bounded_linkage():
    """pyannote's clusterings call ``linkage`` by module name: it must be diarkit's bounded one."""
    import pyannote.audio.pipelines.clustering as clustering
    from diarkit.compat import pyannote

    assert clustering.linkage is pyannote.bounded_linkage


def test_pyannote_diarization_binarizes_through_the_bounded_binarize():
    import pyannote.audio.pipelines.speaker_diarization as speaker_diarization
    from diarkit.compat import pyannote

    assert speaker_diarization.binarize is pyannote.bounded_binarize
    assert pyannote.binarize is pyannote.bounded_binarize


@pytest.mark.parametrize("onset,offset,initial", [(0.45, None, False), (0.5, 0.3, None), (0.6, 0.4, True),
                                                  (0.5, 0.5, "array")])
def test_bounded_binarize_gives_pyannotes_states(onset, offset, initial):
    """Blocks of chunks instead of the whole segmentation at once: the same states, NaN and
    scores exactly at the thresholds included, across several blocks."""
    import numpy as np
    from pyannote.audio.utils.signal import binarize as pyannote_binarize
    from pyannote.core import SlidingWindow, SlidingWindowFeature

    from diarkit.compat import pyannote

    rng = np.random.default_rng(1)
    chunks, frames, classes = 2 * pyannote.BINARIZE_BLOCK_CHUNKS + 77, 40, 3
    data = rng.random((chunks, frames, classes))
    data[rng.random(data.shape) < 0.2] = onset  # ties: keep the previous state
    if offset is not None:
        data[rng.random(data.shape) < 0.2] = offset
    data[rng.random(data.shape) < 0.05] = np.nan
    data[:5] = (onset + (offset or onset)) / 2  # rows where no frame decides: the initial state
    scores = SlidingWindowFeature(data, SlidingWindow(start=0.0, duration=5.0, step=0.5))
    if initial == "array":
        initial = rng.random(chunks * classes) < 0.5
    expected = pyannote_binarize(scores, onset=onset, offset=offset, initial_state=initial)
    found = pyannote.bounded_binarize(scores, onset=onset, offset=offset, initial_state=initial)
    assert found.data.dtype == expected.data.dtype == np.float64
    assert np.array_equal(found.data, expected.data)
    assert found.sliding_window is scores.sliding_window
    assert 0.2 < found.data.mean() < 0.8  # both states occur
    flat = SlidingWindowFeature(data[0], SlidingWindow(start=0.0, duration=0.1, step=0.1))  # 2-D: pyannote's own
    assert np.array_equal(pyannote.bounded_binarize(flat, onset=onset).data, pyannote_binarize(flat, onset=onset).data)


@pytest.mark.parametrize("method", ["centroid", "ward", "single"])
def test_vector_linkage_gives_scipys_dendrogram(method):
    """Above the size bound the linkage runs on vectors: same merges, same clusters as scipy."""
    import numpy as np
    from scipy.cluster.hierarchy import fcluster, linkage

    from diarkit.compat.pyannote import bounded_linkage

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 64))
    points = centres[rng.integers(0, 12, size=900)] + 0.6 * rng.normal(size=(900, 64))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    expected = linkage(points, method=method, metric="euclidean")
    small = bounded_linkage(points, method=method, metric="euclidean")  # under the bound: scipy itself
    vector = bounded_linkage(points, method=method, metric="euclidean", vector_from=100)
    assert np.array_equal(small, expected)
    assert np.array_equal(vector[:, [0, 1, 3]], expected[:, [0, 1, 3]])
    assert np.allclose(vector[:, 2], expected[:, 2], atol=1e-9)
    threshold = float(np.median(expected[:, 2][-20:]))
    assert np.array_equal(fcluster(vector, threshold, "distance"), fcluster(expected, threshold, "distance"))
    # cosine is not a vector metric: it stays with scipy whatever the size
    assert np.array_equal(bounded_linkage(points, method="average", metric="cosine", vector_from=100),
                          linkage(points, method="average", metric="cosine"))
