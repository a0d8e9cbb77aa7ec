"""``code/inference.py`` loaded the way the SageMaker PyTorch / Hugging Face toolkits load it.

A copy of the model directory (as unpacked from model.tar.gz), a fresh interpreter with
only the copy's ``code/`` on ``sys.path``, ``import inference``, the toolkit's check that
transform_fn is not mixed with input_fn/predict_fn/output_fn, ``model_fn(model_dir)``
once, then ``transform_fn`` called with or without the request context depending on its
signature (sagemaker-inference's ``_run_handler_function``), with JSON bodies decoded to
str as the toolkit does. The results are compared with the pipeline run in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ffmpeg

DRIVER = r'''
import base64, importlib, inspect, json, sys

code_dir, model_dir, sample, clip, out = sys.argv[1:]
sys.path.insert(0, code_dir)
module = importlib.import_module("inference")
import diarkit

report = {"diarkit_file": diarkit.__file__, "inference_file": module.__file__}
trio = [name for name in ("input_fn", "predict_fn", "output_fn") if hasattr(module, name)]
assert hasattr(module, "transform_fn") != bool(trio), "transform_fn together with " + ",".join(trio)


class RequestProcessor:
    def __init__(self, headers):
        self.headers = headers

    def get_request_properties(self):
        return self.headers


class Context:
    def __init__(self, headers):
        self.request_processor = [RequestProcessor(headers)]


def run(func, *args, context=None):
    count = len(inspect.signature(func).parameters)
    if count == len(args):
        return func(*args)
    assert count == len(args) + 1, f"{func.__name__} takes {count} arguments"
    return func(*args, context)


def invoke(body, content_type, accept, headers=None):
    headers = {"Content-Type": content_type, "Accept": accept, **(headers or {})}
    if content_type == "application/json":
        body = body.decode("utf-8")
    try:
        result = run(module.transform_fn, model, body, content_type, accept, context=Context(headers))
    except Exception as exc:
        return {"exception": type(exc).__name__, "status": getattr(exc, "status", None),
                "kind": getattr(exc, "kind", None), "message": str(exc)}
    body, content_type = result if isinstance(result, tuple) else (result, accept)
    if isinstance(body, str):
        body = body.encode("utf-8")
    return {"content_type": content_type, "body": body.decode("utf-8")}


model = run(module.model_fn, model_dir)
wav = open(sample, "rb").read()
envelope = json.dumps({"audio_base64": base64.b64encode(open(clip, "rb").read()).decode(),
                       "options": {"num_speakers": 3}}).encode()
report["raw_wav"] = invoke(wav, "audio/wav", "application/json")
report["envelope_vtt"] = invoke(envelope, "application/json", "text/vtt",
                                {"X-Amzn-SageMaker-Custom-Attributes": "num_speakers=2"})
report["garbage"] = invoke(b"not audio at all" * 100, "application/octet-stream", "application/json")
report["bad_attribute"] = invoke(wav, "audio/wav", "application/json",
                                 {"x-amzn-sagemaker-custom-attributes": "num_speakers=lots"})
json.dump(report, open(out, "w"))
'''


def link_or_copy(source: str, target: str) -> None:
    """Hard links where possible: a copy of ~100 MB of models per run is wasted disk."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@pytest.fixture(scope="module")
def toolkit_run(model_dir, sample_wav, tmp_path_factory):
    root = tmp_path_factory.mktemp("sagemaker")
    unpacked = root / "opt" / "ml" / "model"
    shutil.copytree(model_dir, unpacked, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
                    copy_function=link_or_copy)
    from package import package_files  # the package goes into code/diarkit/ as package.py packs it

    for name, source in package_files().items():
        (unpacked / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, unpacked / name)
    clip = root / "clip.wav"
    ffmpeg("-i", str(sample_wav), "-t", "8", str(clip))
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    out = root / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("DIARKIT_")}
    env["DIARKIT_DEVICE"] = "cpu"
    proc = subprocess.run([sys.executable, str(driver), str(unpacked / "code"), str(unpacked), str(sample_wav),
                           str(clip), str(out)], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return unpacked, json.loads(out.read_text())


def test_code_comes_from_the_model_directory_copy(toolkit_run):
    unpacked, report = toolkit_run
    assert Path(report["inference_file"]).parent == unpacked / "code"
    assert Path(report["diarkit_file"]).parent == unpacked / "code" / "diarkit"


def test_raw_wav_gives_the_same_result_as_the_pipeline(toolkit_run, sample_result):
    _, report = toolkit_run
    reply = report["raw_wav"]
    assert reply.get("content_type") == "application/json", reply
    served = json.loads(reply["body"])
    expected = sample_result.to_dict()
    assert served["num_speakers"] == expected["num_speakers"] == 2
    # the same decoded samples, so the same words, times and speakers
    assert served["segments"] == expected["segments"]
    assert served["diarization"] == expected["diarization"]


def test_json_envelope_with_custom_attributes_and_accept_vtt(toolkit_run):
    _, report = toolkit_run
    reply = report["envelope_vtt"]
    assert reply.get("content_type") == "text/vtt", reply
    assert reply["body"].startswith("WEBVTT\n\n") and "-->" in reply["body"] and "<v SPEAKER_" in reply["body"]


def test_errors_keep_their_status(toolkit_run):
    _, report = toolkit_run
    # without sagemaker-inference installed the DiarkitError itself reaches the toolkit
    assert report["garbage"]["status"] == 415 and report["garbage"]["kind"] == "unsupported_media"
    assert report["bad_attribute"]["status"] == 400 and "num_speakers" in report["bad_attribute"]["message"]
