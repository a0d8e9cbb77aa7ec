"""package.py: fetch -> pack -> extract -> load like SageMaker; deterministic archives;
uploads to S3 on a moto server (loopback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from conftest import REPO
from diarkit.models.manifest import Artifact, Manifest, describe_files, sha256_file

PACKAGE = REPO / "scripts" / "package.py"
FETCH = REPO / "scripts" / "fetch_models.py"
JUNK = ("code/.DS_Store", "code/scratch.tmp", "code/diarkit/__pycache__/stale.cpython-311.pyc",
        "code/diarkit.egg-info/PKG-INFO", "code/.fetch-abc/leftover.bin")


def run(script: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env)


def reported_sha256(stdout: str) -> str:
    return stdout.split("sha256 ")[1].split()[0]


@pytest.fixture(scope="module")
def bundled_dir(tmp_path_factory) -> Path:
    """A fresh bundled model directory: the serving code, caches and junk, then the models."""
    root = tmp_path_factory.mktemp("bundled") / "model"
    shutil.copytree(REPO / "model" / "code", root / "code", ignore=shutil.ignore_patterns("__pycache__"))
    for name in JUNK:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"junk")
    proc = run(FETCH, "--profile", "bundled", "--out", str(root), "-q")
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture(scope="module")
def archive(bundled_dir, tmp_path_factory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("pack") / "model.tar.gz"
    proc = run(PACKAGE, str(bundled_dir), "-o", str(output), "-q")
    assert proc.returncode == 0, proc.stderr
    return output, proc.stdout


def expected_members(root: Path) -> set[str]:
    manifest = Manifest.from_dict(json.loads((root / "manifest.json").read_text()))
    names = {"manifest.json"}
    for artifact in manifest.artifacts:
        names.update(artifact.path if f.path == "." else f"{artifact.path}/{f.path}" for f in artifact.files)
    code = {p.relative_to(root).as_posix() for p in (root / "code").rglob("*") if p.is_file()}
    package = REPO / "src" / "diarkit"  # copied into code/diarkit/ beside inference.py
    code |= {f"code/diarkit/{p.relative_to(package).as_posix()}" for p in package.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    return names | {n for n in code if n not in JUNK and ".egg-info/" not in n}


# --- acceptance 1: fetch -> package -> extract -> load as SageMaker does -> 2 speakers ------

SAGEMAKER_LOAD = textwrap.dedent("""
    import importlib.util, json, pathlib, sys
    model_dir, wav = sys.argv[1], sys.argv[2]
    # a Python where diarkit is not installed: drop the editable install's path entry
    sys.path[:] = [p for p in sys.path if not (pathlib.Path(p or ".") / "diarkit" / "__init__.py").is_file()]
    assert importlib.util.find_spec("diarkit") is None, "diarkit is still importable: the test would prove nothing"
    sys.path.insert(0, str(pathlib.Path(model_dir) / "code"))  # what the toolkit does
    import inference, diarkit
    for module in (inference, diarkit):
        assert module.__file__.startswith(model_dir), f"{module.__name__} came from {module.__file__}"
    model = inference.model_fn(model_dir)
    body = pathlib.Path(wav).read_bytes()
    if hasattr(inference, "transform_fn"):
        reply = inference.transform_fn(model, body, "audio/wav", "application/json")
    else:
        reply = inference.output_fn(inference.predict_fn(inference.input_fn(body, "audio/wav"), model),
                                    "application/json")
    if isinstance(reply, tuple):
        reply = reply[0]
    result = json.loads(reply)
    print(json.dumps({"num_speakers": result["num_speakers"], "profile": result["models"]["profile"],
                      "words": sum(len(s["words"]) for s in result["segments"])}))
""")


def test_extracted_archive_loads_like_sagemaker_and_finds_two_speakers(archive, sample_wav, tmp_path):
    output, _ = archive
    model_dir = tmp_path / "opt" / "ml" / "model"
    with tarfile.open(output) as tar:
        tar.extractall(model_dir, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    assert not list(model_dir.rglob("__pycache__")) and not (model_dir / "code" / "diarkit.egg-info").exists()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "-c", SAGEMAKER_LOAD, str(model_dir), str(sample_wav)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["profile"] == "bundled"
    assert result["num_speakers"] == 2
    assert result["words"] > 20


# --- acceptance 2: the same directory gives the same archive -------------------------------

def test_packing_twice_gives_byte_identical_archives(bundled_dir, archive, tmp_path):
    first, stdout = archive
    for path in bundled_dir.rglob("*"):  # new mtimes must not matter
        os.utime(path, (1_800_000_000, 1_800_000_000), follow_symlinks=False)
    second = tmp_path / "again" / "model.tar.gz"
    proc = run(PACKAGE, str(bundled_dir), "-o", str(second), "-q")
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(first) == sha256_file(second) == reported_sha256(stdout) == reported_sha256(proc.stdout)
    assert f"({first.stat().st_size} bytes)" in stdout
    assert not [p for p in second.parent.iterdir() if p.name != "model.tar.gz"], "temporary file left behind"


def test_archive_holds_code_and_artifacts_with_normalized_metadata(bundled_dir, archive):
    output, _ = archive
    with tarfile.open(output) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    files = {m.name for m in members if m.isfile()}
    assert files == expected_members(bundled_dir)
    assert {"code/inference.py", "code/diarkit/pipeline.py", "asr/tiny.en/model.bin"} <= files
    for junk in JUNK:
        assert junk not in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "egg-info" in n]
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname, member.mtime) == (0, 0, "", "", 0)
        assert member.mode == (0o755 if member.isdir() else 0o644)
    with open(output, "rb") as handle:
        header = handle.read(10)
    assert header[:2] == b"\x1f\x8b" and header[4:8] == b"\0\0\0\0"  # gzip mtime 0


# --- acceptance 3: upload to S3 (moto on loopback) and back --------------------------------

@pytest.fixture
def s3(moto_endpoint):
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"diarkit-models-{os.getpid()}-{len(client.list_buckets()['Buckets'])}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def test_upload_is_multipart_with_checksums_and_downloads_identical(bundled_dir, archive, s3, moto_endpoint,
                                                                    tmp_path):
    client, bucket = s3
    output = tmp_path / "model.tar.gz"
    proc = run(PACKAGE, str(bundled_dir), "-o", str(output), "--upload", f"s3://{bucket}/diarkit/model.tar.gz",
               "--endpoint-url", moto_endpoint, "--part-size", "8")
    assert proc.returncode == 0, proc.stderr
    digest = sha256_file(output)
    assert digest == reported_sha256(archive[1])  # same directory, same archive
    assert f"s3://{bucket}/diarkit/model.tar.gz: uploaded {output.stat().st_size} bytes" in proc.stdout
    assert "%|" in proc.stderr  # the progress bar
    head = client.head_object(Bucket=bucket, Key="diarkit/model.tar.gz", ChecksumMode="ENABLED")
    parts = int(head["ETag"].strip('"').split("-")[1])
    assert parts == -(-output.stat().st_size // (8 * 1024 * 1024))  # multipart, 8 MiB parts
    assert head["Metadata"]["sha256"] == digest and head.get("ChecksumSHA256")
    downloaded = tmp_path / "downloaded.tar.gz"
    client.download_file(bucket, "diarkit/model.tar.gz", str(downloaded))
    assert sha256_file(downloaded) == digest


def test_uncompressed_upload_puts_each_file_under_the_prefix(bundled_dir, s3, moto_endpoint, tmp_path):
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="large/v1/old-model.bin", Body=b"stale")
    proc = run(PACKAGE, str(bundled_dir), "--uncompressed", f"s3://{bucket}/large/v1", "--endpoint-url",
               moto_endpoint, "--part-size", "5", "-q")
    assert proc.returncode == 0, proc.stderr
    assert f"'S3Uri': 's3://{bucket}/large/v1/', 'S3DataType': 'S3Prefix', 'CompressionType': 'None'" in proc.stdout
    assert "1 object(s)" in proc.stderr and "not part of this model directory" in proc.stderr
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="large/v1/")["Contents"]}
    assert keys - {"large/v1/old-model.bin"} == {f"large/v1/{name}" for name in expected_members(bundled_dir)}
    manifest = json.loads(client.get_object(Bucket=bucket, Key="large/v1/manifest.json")["Body"].read())
    asr = next(a for a in manifest["artifacts"] if a["role"] == "asr")
    model_bin = next(f for f in asr["files"] if f["path"] == "model.bin")
    client.download_file(bucket, "large/v1/asr/tiny.en/model.bin", str(tmp_path / "model.bin"))
    assert sha256_file(tmp_path / "model.bin") == model_bin["sha256"]
    head = client.head_object(Bucket=bucket, Key="large/v1/asr/tiny.en/model.bin")
    assert head["Metadata"]["sha256"] == model_bin["sha256"]


# --- refusals ------------------------------------------------------------------------------

@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    """A small hand-made model directory (fake weights) for the failure paths."""
    root = tmp_path / "tiny"
    contents = {"asr/x/model.bin": b"asr" * 100, "segmentation/seg.bin": b"seg", "embedding/emb.bin": b"emb",
                "code/inference.py": b"def model_fn(model_dir):\n    return model_dir\n"}
    for name, data in contents.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    artifacts = [Artifact(role, "test", path, {"type": "test"}, describe_files(root / path))
                 for role, path in (("asr", "asr/x"), ("segmentation", "segmentation/seg.bin"),
                                    ("embedding", "embedding/emb.bin"))]
    (root / "manifest.json").write_text(json.dumps(Manifest("tiny", artifacts).to_dict()))
    return root


def test_a_directory_that_does_not_match_its_manifest_is_refused(tiny_dir, tmp_path):
    (tiny_dir / "asr/x/model.bin").write_bytes(b"tampered")
    (tiny_dir / "embedding/emb.bin").unlink()
    output = tmp_path / "out" / "model.tar.gz"
    proc = run(PACKAGE, str(tiny_dir), "-o", str(output))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("package: error: "), proc.stderr
    assert "changed: asr/x/model.bin" in lines[0] and "missing: embedding/emb.bin" in lines[0]
    assert not output.parent.exists() or not list(output.parent.iterdir())


def test_source_date_epoch_sets_every_mtime(tiny_dir, tmp_path):
    output = tmp_path / "model.tar.gz"
    proc = run(PACKAGE, str(tiny_dir), "-o", str(output), "-q", env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(output) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1_700_000_000}
        assert tar.extractfile("code/inference.py").read().startswith(b"def model_fn")


@pytest.mark.parametrize("args, message", [
    (["--upload", "s3://bucket/key"], "--upload needs -o"),
    ([], "nothing to do"),
])
def test_bad_command_lines_exit_2(tiny_dir, args, message):
    proc = run(PACKAGE, str(tiny_dir), *args)
    assert proc.returncode == 2 and message in proc.stderr


def test_a_bad_s3_url_is_refused_before_packing(tiny_dir, tmp_path):
    output = tmp_path / "model.tar.gz"
    proc = run(PACKAGE, str(tiny_dir), "-o", str(output), "--upload", "s3://bucket-only")
    assert proc.returncode == 1 and "expected s3://bucket/key" in proc.stderr
    assert not output.exists()


def test_a_directory_without_code_is_refused(tiny_dir, tmp_path):
    shutil.rmtree(tiny_dir / "code")
    proc = run(PACKAGE, str(tiny_dir), "-o", str(tmp_path / "model.tar.gz"))
    assert proc.returncode == 1 and "no code/ folder" in proc.stderr
