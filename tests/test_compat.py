"""Every third-party symbol diarkit relies on, imported through its one compatibility module.

An upgrade of whisperx, faster-whisper, pyannote, resemblyzer or uvicorn that moves or
renames something fails here, naming it, instead of somewhere in the middle of a request.
"""

from __future__ import annotations

import importlib

import pytest

MODULES = ["whisperx", "faster_whisper", "pyannote", "resemblyzer", "uvicorn"]


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
