"""Voice library: enroll from clips, name speakers in a new episode, refuse foreign or corrupt entries.

Real models, real LibriSpeech voices (the shared data; skipped when absent), clips converted
with ffmpeg, the real CLI; S3 through a moto server on loopback.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pytest
import soundfile as sf

from conftest import ffmpeg, requires_shared_data
from diarkit import cli
from diarkit.request import RequestOptions

# LibriSpeech speakers (dev fold of `python -m eval voices`): three enrolled, one stranger
ENROLLED = {"ALICE": "1688", "BOB": "2033", "CAROL": "2609"}
STRANGER = "367"
LABEL = re.compile(r"^SPEAKER_\d+$")


@pytest.fixture(scope="module")
def voices_data() -> Path:
    return requires_shared_data("librispeech-test-other")


@pytest.fixture(scope="module")
def clips(voices_data, tmp_path_factory) -> dict[str, list[Path]]:
    """Two enrollment clips per voice (their first utterances), as mp3 made with ffmpeg."""
    out = tmp_path_factory.mktemp("clips")
    made = {}
    for name, speaker in ENROLLED.items():
        made[name] = []
        for flac in sorted((voices_data / speaker).glob("*.flac"))[:2]:
            target = out / f"{name}-{flac.stem}.mp3"
            ffmpeg("-i", str(flac), "-b:a", "64k", str(target))
            made[name].append(target)
    return made


@pytest.fixture(scope="module")
def episode(voices_data, tmp_path_factory):
    """Other utterances of the three voices plus a never-enrolled one, as one conversation."""
    from eval.simulate import SimConfig, build_conversation, index_utterances, rttm_lines

    index = index_utterances(voices_data)
    chosen = {speaker: index[speaker][3:6] for speaker in [*ENROLLED.values(), STRANGER]}
    cfg = SimConfig(data=str(voices_data), min_speakers=4, max_speakers=4, turns=8, seed=7, prefix="episode")
    conv = build_conversation(cfg, chosen, 0)
    path = tmp_path_factory.mktemp("episode") / "episode.wav"
    sf.write(str(path), conv.audio, 16000, subtype="PCM_16")
    turns = []
    for line in rttm_lines(conv):
        parts = line.split()
        turns.append((float(parts[3]), float(parts[3]) + float(parts[4]), parts[7]))
    return path, turns


@pytest.fixture(scope="module")
def library(clips, model_dir, tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("lib") / "series"
    for name, paths in clips.items():
        assert cli.main(["voices", "add", str(lib), name, *map(str, paths), "--model-dir", str(model_dir)]) == 0
    return lib


def covered_by(hyp_turns, ref_turns, speaker: str) -> dict[str, float]:
    """Seconds of the reference speaker's speech under each hypothesis label."""
    out: dict[str, float] = {}
    for rs, re_, rl in ref_turns:
        if rl != speaker:
            continue
        for t in hyp_turns:
            out[t["speaker"]] = out.get(t["speaker"], 0.0) + max(0.0, min(re_, t["end"]) - max(rs, t["start"]))
    return out


def test_enrolled_voices_named_in_every_format_stranger_stays_anonymous(library, episode, model_dir, tmp_path):
    wav, ref_turns = episode
    entries = sorted(p.name for p in library.iterdir())
    assert entries == ["ALICE.voice.json", "BOB.voice.json", "CAROL.voice.json"]
    entry = json.loads((library / "ALICE.voice.json").read_text())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    embedding = next(a for a in manifest["artifacts"] if a["role"] == "embedding")
    assert entry["embedding_model"] == {"kind": embedding["kind"], "sha256": embedding["files"][0]["sha256"]}
    assert len(entry["embeddings"]) == 2 and len(entry["sources"]) == 2 and entry["seconds"] > 10
    assert abs(np.linalg.norm(entry["centroid"]) - 1) < 1e-3

    out = tmp_path / "out"
    assert cli.main(["transcribe", str(wav), "-o", str(out), "--voices", str(library), "--model-dir",
                     str(model_dir), "--device", "cpu", "-q", "--formats", "json,srt,vtt,rttm,txt,csv,xlsx"]) == 0
    result = json.loads((out / "episode.json").read_text())
    labels = {s["label"] for s in result["speakers"]}
    assert set(ENROLLED) <= labels, labels
    for name, speaker in ENROLLED.items():
        covered = covered_by(result["diarization"], ref_turns, speaker)
        assert max(covered, key=covered.get) == name, (name, covered)  # the right voice carries the name
    stranger = covered_by(result["diarization"], ref_turns, STRANGER)
    assert LABEL.match(max(stranger, key=stranger.get)), stranger
    for s in result["speakers"]:
        voice = s["voice"]
        assert voice["best_match"] in ENROLLED and isinstance(voice["score"], float)
        if s["label"] in ENROLLED:
            assert voice["name"] == s["label"] == voice["best_match"] and voice["score"] >= result["options"]["voice_threshold"]
        else:
            assert voice["name"] is None and LABEL.match(s["label"]) and voice["diarization_label"] == s["label"]
    assert result["options"]["voices"] == str(library)
    words = {w["speaker"] for seg in result["segments"] for w in seg["words"]}
    spoken = words & set(ENROLLED)  # names of the voices whose words tiny.en heard
    assert words <= labels and len(spoken) >= 2, words
    srt = (out / "episode.srt").read_text()
    rttm = (out / "episode.rttm").read_text()
    vtt = (out / "episode.vtt").read_text()
    txt = (out / "episode.txt").read_text()
    for name in ENROLLED:
        assert f" {name} <NA>" in rttm
    for name in spoken:
        assert f"{name}: " in srt and f"<v {name}>" in vtt and f"{name}:" in txt
    assert re.search(r" SPEAKER_\d+ <NA>", rttm)  # the stranger
    # the dialogue list casts from the names: its Source column (capitals) and the XLSX's speaker sheet
    with (out / "episode.csv").open(newline="") as f:
        sources = {row["Source"] for row in csv.DictReader(f)}
    assert {name.upper() for name in spoken} <= sources, sources
    workbook = openpyxl.load_workbook(out / "episode.xlsx", read_only=True)
    sheets = [list(sheet.iter_rows(values_only=True)) for sheet in workbook.worksheets]
    xlsx_sources = {row[2] for row in sheets[0][1:]} | {row[0] for row in sheets[1][1:]}
    assert {name.upper() for name in ENROLLED} <= xlsx_sources, xlsx_sources


def test_same_speaker_names_without_the_library_are_anonymous(pipeline, episode):
    result = pipeline.transcribe(episode[0])
    assert all(LABEL.match(s.label) and s.voice is None for s in result.speakers)
    assert "voice" not in json.dumps(result.to_dict()["speakers"])


def test_library_from_another_embedding_model_is_refused(library, episode, model_dir, tmp_path, capsys):
    from diarkit.voices.library import VoiceLibraryError

    foreign = tmp_path / "foreign"
    shutil.copytree(library, foreign)
    entry = json.loads((foreign / "BOB.voice.json").read_text())
    entry["embedding_model"] = {"kind": "voicefilter-lite", "sha256": "0" * 64}
    (foreign / "BOB.voice.json").write_text(json.dumps(entry))
    out = tmp_path / "out"
    code = cli.main(["transcribe", str(episode[0]), "-o", str(out), "--voices", str(foreign), "--model-dir",
                     str(model_dir), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "another speaker-embedding model" in err and "voicefilter-lite" in err and "BOB" in err
    assert str(foreign) in err and "enroll the voices again" in err
    # and adding clips to that voice with this model is refused too
    code = cli.main(["voices", "add", str(foreign), "BOB", str(episode[0]), "--model-dir", str(model_dir)])
    assert code == 2 and "another speaker-embedding model" in capsys.readouterr().err
    with pytest.raises(VoiceLibraryError, match="another speaker-embedding model"):
        from diarkit.voices.library import EmbeddingModel, load_library
        from diarkit.models.manifest import ModelDirectory

        load_library(str(foreign), EmbeddingModel.of(ModelDirectory(model_dir)))


def test_corrupt_entry_is_named_and_the_rest_still_names(library, episode, pipeline, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(library, damaged)
    text = (damaged / "CAROL.voice.json").read_text()
    (damaged / "CAROL.voice.json").write_text(text[: len(text) // 2])  # cut short, as by a failed copy
    result = pipeline.transcribe(episode[0], options=RequestOptions(voices=str(damaged)))
    labels = {s.label for s in result.speakers}
    assert {"ALICE", "BOB"} <= labels and "CAROL" not in labels
    assert any("CAROL" in w and "corrupt" in w for w in result.warnings), result.warnings
    assert cli.main(["voices", "list", str(damaged)]) == 0
    captured = capsys.readouterr()
    assert "ALICE" in captured.out and "BOB" in captured.out and "CAROL" not in captured.out
    assert "CORRUPT" in captured.err and "CAROL" in captured.err


def test_missing_library_and_bad_names_are_clear_errors(model_dir, episode, clips, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert cli.main(["transcribe", str(episode[0]), "-o", str(tmp_path / "o"), "--voices", str(missing),
                     "--model-dir", str(model_dir), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert "voice library folder not found" in err and str(missing) in err
    assert cli.main(["voices", "add", str(tmp_path / "lib"), "SPEAKER_03", str(clips["ALICE"][0]),
                     "--model-dir", str(model_dir)]) == 2
    assert "invalid voice name 'SPEAKER_03'" in capsys.readouterr().err
    assert cli.main(["voices", "remove", str(tmp_path / "lib"), "ALICE"]) == 2
    assert "not found" in capsys.readouterr().err
    silence = tmp_path / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3", str(silence))
    assert cli.main(["voices", "add", str(tmp_path / "lib"), "DAVE", str(silence), "--model-dir", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert str(silence) in err and "speech found" in err and not (tmp_path / "lib" / "DAVE.voice.json").exists()


def test_voices_option_parses_at_every_edge():
    assert RequestOptions.from_custom_attributes("voices=s3://bucket/lib/;num_speakers=4").voices == "s3://bucket/lib/"
    assert RequestOptions.from_mapping({"voices": "lib"}).voices == "lib"
    assert RequestOptions.from_flags(voices="a", custom_attributes="voices=b").voices == "a"
    assert "voices=s3://b/l" in RequestOptions(voices="s3://b/l").to_custom_attributes()
    from diarkit.errors import OptionsError

    for bad in ("", "s3://"):
        with pytest.raises(OptionsError, match="voices"):
            RequestOptions.from_mapping({"voices": bad})


def test_add_from_a_named_episode_then_remove(library, episode, model_dir, tmp_path, capsys):
    """A person named the stranger in one episode: its single-speaker speech becomes a voice."""
    wav, ref_turns = episode
    out = tmp_path / "out"
    assert cli.main(["transcribe", str(wav), "-o", str(out), "--model-dir", str(model_dir), "--device", "cpu",
                     "-q", "--formats", "json"]) == 0
    result = json.loads((out / "episode.json").read_text())
    covered = covered_by(result["diarization"], ref_turns, STRANGER)
    stranger = max(covered, key=covered.get)
    lib = tmp_path / "grown"
    shutil.copytree(library, lib)
    # no media next to the result: a clear error; then with --media
    assert cli.main(["voices", "add-from", str(lib), str(out / "episode.json"), f"{stranger}=DAVE",
                     "--model-dir", str(model_dir)]) == 2
    assert "--media" in capsys.readouterr().err
    assert cli.main(["voices", "add-from", str(lib), str(out / "episode.json"), "SPEAKER_42=EVE",
                     "--media", str(wav), "--model-dir", str(model_dir)]) == 2
    assert "SPEAKER_42 not in" in capsys.readouterr().err
    assert cli.main(["voices", "add-from", str(lib), str(out / "episode.json"), f"{stranger}=DAVE",
                     "--media", str(wav), "--model-dir", str(model_dir)]) == 0
    assert "DAVE: from" in capsys.readouterr().out
    dave = json.loads((lib / "DAVE.voice.json").read_text())
    assert dave["sources"][0]["speaker"] == stranger and dave["sources"][0]["kind"] == "result"
    assert cli.main(["voices", "list", str(lib), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in listed["voices"]] == ["ALICE", "BOB", "CAROL", "DAVE"] and not listed["problems"]
    assert cli.main(["voices", "remove", str(lib), "DAVE"]) == 0
    assert not (lib / "DAVE.voice.json").exists() and (lib / "ALICE.voice.json").exists()


def test_s3_library_is_read_once_until_it_changes(library, moto_endpoint, model_dir, monkeypatch, capsys):
    import boto3

    from diarkit.models.manifest import ModelDirectory
    from diarkit.voices.library import EmbeddingModel, LibraryCache

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="voices-cache")
    for path in library.glob("*.voice.json"):
        s3.upload_file(str(path), "voices-cache", f"series/{path.name}")
    location = "s3://voices-cache/series/"
    cache = LibraryCache(EmbeddingModel.of(ModelDirectory(model_dir)))
    first = cache.get(location)
    assert first.names == ["ALICE", "BOB", "CAROL"] and cache.reads == 1
    assert cache.get(location) is first and cache.reads == 1  # unchanged: no entry read again
    assert cli.main(["voices", "remove", location, "CAROL"]) == 0
    capsys.readouterr()
    assert cache.get(location).names == ["ALICE", "BOB"] and cache.reads == 2
    assert cli.main(["voices", "list", location]) == 0
    assert "ALICE" in capsys.readouterr().out


def test_queue_worker_names_speakers_from_an_s3_library(library, episode, moto_endpoint, model_dir):
    """Acceptance: a library in S3 (moto), used by the queue worker through custom attributes."""
    import os
    import uuid
    from types import SimpleNamespace

    import boto3

    from conftest import REPO
    from test_worker_e2e import Process, notification, upload

    tag = uuid.uuid4().hex[:8]
    s3, sqs, sns = (boto3.client(n, endpoint_url=moto_endpoint) for n in ("s3", "sqs", "sns"))
    bucket = f"dk-voices-{tag}"
    s3.create_bucket(Bucket=bucket)
    for path in library.glob("*.voice.json"):
        s3.upload_file(str(path), bucket, f"voices/series-1/{path.name}")

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=f"{name}-{tag}")["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    jobs, jobs_arn = queue("dkv-jobs")
    notes, notes_arn = queue("dkv-notes")
    topic = sns.create_topic(Name=f"dkv-done-{tag}")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=notes_arn)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": jobs_arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "input/"}]}}}]})
    stack = SimpleNamespace(s3=s3, sqs=sqs, bucket=bucket, jobs=jobs, notes=notes, received=[])
    env = dict(os.environ, AWS_ENDPOINT_URL=moto_endpoint, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO / "src"))
    worker = Process(["worker", "--queue-url", jobs, "--output", f"s3://{bucket}/output/", "--success-topic", topic,
                      "--error-topic", topic, "--wait-time", "1", "--model-dir", str(model_dir), "--device", "cpu",
                      "--custom-attributes", f"voices=s3://{bucket}/voices/series-1/;format=rttm"], env, "voices")
    try:
        inference = upload(stack, episode[0], "input/episode 2.wav")
        note = notification(stack, inference, timeout=600)
        assert note["invocationStatus"] == "Completed", note
        rttm = s3.get_object(Bucket=bucket, Key=f"output/{inference}.out")["Body"].read().decode()
        named = {line.split()[7] for line in rttm.splitlines()}
        assert set(ENROLLED) <= named and any(LABEL.match(label) for label in named), named
        assert worker.count("voice library s3://") == 1  # read once
    finally:
        worker.stop()


def test_serve_takes_the_library_from_the_json_body_and_refuses_a_missing_one(library, episode, model_dir):
    """`diarkit serve`: options.voices in the JSON envelope; a missing library is a 400 voice_library."""
    import base64
    import os
    import urllib.error
    import urllib.request

    from test_worker_e2e import Process, free_port
    from diarkit.worker.processors import HttpProcessor

    port = free_port()
    server = Process(["serve", "--host", "127.0.0.1", "--port", str(port), "--model-dir", str(model_dir),
                      "--device", "cpu", "--graceful-timeout", "1"], dict(os.environ), "serve")
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        HttpProcessor(f"http://127.0.0.1:{port}").wait_ready(timeout=300, interval=0.5)
        body = json.dumps({"audio_base64": base64.b64encode(episode[0].read_bytes()).decode(),
                           "options": {"voices": str(library), "format": "rttm"}}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            rttm = response.read().decode()
        assert set(ENROLLED) <= {line.split()[7] for line in rttm.splitlines()}
        request = urllib.request.Request(url, data=episode[0].read_bytes(), headers={
            "Content-Type": "audio/wav", "X-Amzn-SageMaker-Custom-Attributes": "voices=/nonexistent/lib"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=600)
        error = json.loads(refused.value.read())
        assert refused.value.code == 400 and error["error"] == "voice_library"
        assert "/nonexistent/lib" in json.dumps(error) and "not found" in json.dumps(error)
    finally:
        server.stop()


def test_single_speaker_runs_are_the_samples_where_one_voice_speaks_alone():
    """The naming and enrollment cut each speaker's speech from runs found by a sweep over the
    turns; the samples must be those of the per-speaker masks they replace (a speaker's own
    overlapping turns count once, turns past the end are clipped, empty ones ignored)."""
    from diarkit.audio import pooled_speech
    from diarkit.result import SpeakerTurn
    from diarkit.voices.speech import single_speaker_runs, speech_seconds

    rng = np.random.default_rng(7)
    sr, num_samples = 100, 6000  # 60 s at 100 Hz keeps the reference masks small
    turns = []
    for _ in range(60):
        start = float(rng.uniform(-2, 62))
        turns.append(SpeakerTurn(round(start, 2), round(start + float(rng.uniform(0, 4)), 2), f"S{rng.integers(4)}"))
    turns.append(SpeakerTurn(10.0, 10.0, "S0"))  # empty
    active = {t.speaker: np.zeros(num_samples, dtype=bool) for t in turns}
    for t in turns:  # the masks the runs replace
        a, b = max(0, int(round(t.start * sr))), min(num_samples, int(round(t.end * sr)))
        if b > a:
            active[t.speaker][a:b] = True
    alone = sum(m.astype(int) for m in active.values()) == 1
    waveform = rng.standard_normal(num_samples).astype(np.float32)
    runs = single_speaker_runs(turns, num_samples, sr)
    assert sorted(runs) == sorted(active)
    for label, mask in active.items():
        own = runs[label]
        assert np.all(own[1:, 0] > own[:-1, 1]) and np.all(own[:, 1] > own[:, 0])
        assert np.array_equal(pooled_speech(waveform, own, num_samples), waveform[mask & alone]), label
        assert speech_seconds(own, sr) == (mask & alone).sum() / sr
    assert any(len(r) > 2 for r in runs.values())
