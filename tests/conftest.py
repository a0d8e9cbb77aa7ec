"""Shared fixtures: the real model directory, the real sample, media made with ffmpeg."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

SHARED_DATA = REPO.parent / "shared" / "data"
PYANNOTE_SAMPLE_DIR = Path(importlib.util.find_spec("pyannote.audio").origin).parent / "sample"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The bundled model directory (fetched once if a checkout has none yet)."""
    root = REPO / "model"
    if not (root / "manifest.json").is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "fetch_models.py"), "--profile", "bundled",
                        "--out", str(root), "-q"], check=True)
    return root


@pytest.fixture(scope="session")
def pipeline(model_dir):
    from diarkit.pipeline import DiarkitPipeline

    return DiarkitPipeline.from_model_dir(model_dir, device="cpu")


@pytest.fixture(scope="session")
def sample_wav() -> Path:
    return PYANNOTE_SAMPLE_DIR / "sample.wav"


@pytest.fixture(scope="session")
def sample_rttm() -> Path:
    return PYANNOTE_SAMPLE_DIR / "sample.rttm"


@pytest.fixture(scope="session")
def sample_stm() -> Path:
    return PYANNOTE_SAMPLE_DIR / "sample.stm"


@pytest.fixture(scope="session")
def sample_result(pipeline, sample_wav):
    return pipeline.transcribe(sample_wav)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory, sample_wav) -> Path:
    """The sample in every container and codec users send, made with real ffmpeg."""
    out = tmp_path_factory.mktemp("media")
    src = str(sample_wav)
    ffmpeg("-i", src, "-c:a", "pcm_s16le", str(out / "pcm16.wav"))
    ffmpeg("-i", src, "-c:a", "pcm_f32le", str(out / "float32.wav"))
    ffmpeg("-i", src, "-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le", str(out / "stereo44k.wav"))
    ffmpeg("-i", src, str(out / "sample.flac"))
    ffmpeg("-i", src, "-b:a", "64k", str(out / "sample.mp3"))
    ffmpeg("-i", src, "-c:a", "aac", "-b:a", "64k", str(out / "sample.m4a"))
    ffmpeg("-i", src, "-c:a", "libopus", "-b:a", "32k", str(out / "sample.ogg"))
    ffmpeg("-i", src, "-c:a", "libopus", "-b:a", "32k", str(out / "sample.opus"))
    for ext, vcodec in (("mp4", "libx264"), ("mkv", "libx264"), ("mov", "libx264")):
        ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=5:d=30", "-i", src, "-shortest",
               "-c:v", vcodec, "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "48000", "-ac", "2",
               str(out / f"video.{ext}"))
    return out


def requires_shared_data(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"{path} not found: the shared evaluation data is not on this machine")
    return path


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real moto server on loopback (S3, SQS, SNS, SageMaker, Lambda, autoscaling...)."""
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ[key] = value
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://{host}:{port}"
    server.stop()


# --- the production profiles, with stand-in weights (tests/standins.py) --------------------

@pytest.fixture(scope="session")
def standins(tmp_path_factory):
    """Random-weight stand-ins of every hub artifact of large-v2 / large-v3, built once."""
    from standins import StandIns

    return StandIns(tmp_path_factory.mktemp("standins"))


@pytest.fixture(scope="session")
def profile_dirs(standins, model_dir, tmp_path_factory) -> dict[str, Path]:
    """Model directories laid out as fetch_models.py writes large-v2 and large-v3 (ASR: tiny.en)."""
    root = tmp_path_factory.mktemp("profiles")
    return {profile: standins.build_profile_dir(profile, root / profile, model_dir / "asr" / "tiny.en")
            for profile in ("large-v2", "large-v3")}


@pytest.fixture(scope="session")
def sample10(sample_wav, tmp_path_factory) -> Path:
    """The first 10 s of the shipped sample (ResNet34 embeddings are slow on a CPU)."""
    out = tmp_path_factory.mktemp("sample10") / "sample10.wav"
    ffmpeg("-i", str(sample_wav), "-t", "10", str(out))
    return out
