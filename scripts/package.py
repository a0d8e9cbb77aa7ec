#!/usr/bin/env python3
"""Pack a model directory into model.tar.gz for SageMaker, and upload it.

The directory is checked against its manifest first. The archive holds manifest.json,
every artifact file the manifest lists, ``code/`` (without caches), and the installed
``diarkit`` package copied into ``code/diarkit/`` beside ``code/inference.py``, so the
SageMaker toolkits (which put ``code/`` on the path) import it from the archive; it is
deterministic: sorted entries, fixed mtime (0, or SOURCE_DATE_EPOCH), uid/gid 0, no
user names, normalized modes, so the same directory always gives the same sha256.

    python scripts/package.py model/ -o model.tar.gz
    python scripts/package.py model/ -o model.tar.gz --upload s3://bucket/diarkit/model.tar.gz
    python scripts/package.py model/ --uncompressed s3://bucket/diarkit/large-v3/

--upload sends the archive (multipart, SHA256 checksums); SageMaker's ModelDataUrl (or
ModelDataSource with CompressionType Gzip) points at it. --uncompressed sends the same
files one object each under a prefix, for ModelDataSource {S3DataType: S3Prefix,
CompressionType: None}: large models start faster that way (no single-stream gunzip).
The S3 endpoint comes from --endpoint-url or AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import logging
import os
import stat
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent

import diarkit
from diarkit.errors import ModelDirectoryError
from diarkit.models.manifest import MANIFEST_NAME, ModelDirectory, sha256_file

logger = logging.getLogger("package")

#: Never packed: caches, build leftovers, unfinished fetches and temporary files.
EXCLUDE = ("__pycache__", "*.pyc", "*.pyo", ".fetch-*", "*.tmp", ".DS_Store", "*.egg-info", ".cache",
           ".pytest_cache", ".ipynb_checkpoints", ".git")
MiB = 1024 * 1024


class PackageError(Exception):
    """A one-line reason packing or uploading cannot go on."""


def excluded(relative: PurePosixPath) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in EXCLUDE)


#: where the package goes in the archive, beside inference.py
PACKAGE_DIR = "code/diarkit"


def package_files() -> dict[str, Path]:
    """The installed diarkit package's files, by their name in the archive."""
    source = Path(diarkit.__file__).resolve().parent
    return {f"{PACKAGE_DIR}/{path.relative_to(source).as_posix()}": path
            for path in sorted(source.rglob("*"))
            if path.is_file() and not excluded(PurePosixPath(path.relative_to(source).as_posix()))}


def collect(root: Path) -> dict[str, Path]:
    """Every file to ship, by its name in the archive: the manifest, its artifacts' files,
    code/, and the package (a stale ``code/diarkit`` in the directory is replaced by it)."""
    directory = ModelDirectory(root, check_kinds=False)
    problems = directory.verify()
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise PackageError(f"{root} does not match its manifest ({shown}): re-run scripts/fetch_models.py")
    try:
        directory.check_kinds()
    except ModelDirectoryError as exc:  # packing is about files; say that it will not load
        logger.warning("warning: diarkit will not load this directory: %s", exc)
    files = {MANIFEST_NAME}
    for artifact in directory.manifest.artifacts:
        for f in artifact.files:
            files.add(artifact.path if f.path == "." else f"{artifact.path}/{f.path}")
    code = root / "code"
    if not code.is_dir():
        raise PackageError(f"{root} has no code/ folder: the archive would have no serving code")
    if not (code / "inference.py").is_file():
        logger.warning("warning: %s has no inference.py; SageMaker's toolkit will not find the handlers", code)
    for path in code.rglob("*"):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_file() and not excluded(relative) and not str(relative).startswith(PACKAGE_DIR + "/"):
            files.add(str(relative))
    return {**{name: root / name for name in sorted(files)}, **package_files()}


def tree(files: list[str]) -> list[str]:
    """Files and every folder above them, sorted (a folder comes before its contents)."""
    entries = set(files)
    for name in files:
        entries.update(str(parent) for parent in PurePosixPath(name).parents if str(parent) != ".")
    return sorted(entries)


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


class HashingWriter:
    """A write-only file that counts and hashes what passes through."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def tar_info(path: Path, name: str, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size = path.stat().st_size
        info.mode = 0o755 if mode & stat.S_IXUSR else 0o644
    return info


def pack(root: Path, output: Path, level: int = 6, files: dict[str, Path] | None = None) -> tuple[int, str, int]:
    """Write ``output`` (via a temporary name); returns (size, sha256, number of entries)."""
    files = files if files is not None else collect(root)
    entries = tree(list(files))
    mtime = source_date_epoch()
    output.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            writer = HashingWriter(handle)
            with gzip.GzipFile(filename="", mode="wb", fileobj=writer, compresslevel=level, mtime=mtime) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name in entries:
                        source = files.get(name)  # None: a folder above some files
                        info = tar_info(source or root, name, mtime)
                        if info.isdir():
                            tar.addfile(info)
                        else:
                            with open(source, "rb") as data:
                                tar.addfile(info, data)
        os.replace(handle.name, output)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return writer.size, writer.sha256.hexdigest(), len(entries)


# --- S3 ------------------------------------------------------------------------------------

def parse_s3(url: str, *, prefix: bool) -> tuple[str, str]:
    """(bucket, key) of an s3:// URL; a prefix gets its trailing slash (SageMaker needs it)."""
    bucket, _, key = url[5:].partition("/") if url.startswith("s3://") else ("", "", "")
    if not bucket or (not prefix and (not key or key.endswith("/"))):
        raise PackageError(f"expected s3://bucket/{'prefix/' if prefix else 'key'}, not {url!r}")
    if prefix and key and not key.endswith("/"):
        key += "/"
    return bucket, key


def s3_client(endpoint_url: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10,
                                      read_timeout=120))


def transfer_config(part_size_mib: int):
    from boto3.s3.transfer import TransferConfig

    if part_size_mib < 5:
        raise PackageError("--part-size must be at least 5 (MiB): S3's smallest multipart part")
    part = part_size_mib * MiB
    return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=4)


def check_s3_ready(part_size_mib: int) -> None:
    """What can be checked before packing gigabytes: the part size and that credentials exist."""
    import boto3

    transfer_config(part_size_mib)
    if boto3.Session().get_credentials() is None:
        raise PackageError("no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, or run on a role)")


def progress_bar(total: int, label: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=quiet,
                file=sys.stderr, leave=False)


def upload_file(client, path: Path, bucket: str, key: str, sha256: str, config, bar) -> None:
    client.upload_file(str(path), bucket, key, Config=config, Callback=bar.update,
                       ExtraArgs={"ChecksumAlgorithm": "SHA256", "Metadata": {"sha256": sha256}})


def upload_archive(archive: Path, sha256: str, url: str, *, endpoint_url: str | None, part_size: int,
                   quiet: bool) -> dict:
    """Multipart upload with SHA256 checksums; returns the object's head."""
    bucket, key = parse_s3(url, prefix=False)
    client = s3_client(endpoint_url)
    with progress_bar(archive.stat().st_size, key, quiet) as bar:
        upload_file(client, archive, bucket, key, sha256, transfer_config(part_size), bar)
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    if head["ContentLength"] != archive.stat().st_size:
        raise PackageError(f"s3://{bucket}/{key} has {head['ContentLength']} bytes, "
                           f"the archive {archive.stat().st_size}")
    return head


def upload_tree(root: Path, url: str, *, endpoint_url: str | None, part_size: int, quiet: bool,
                files: dict[str, Path] | None = None) -> list[str]:
    """Every file to ship, one object each under the prefix; returns the keys."""
    bucket, prefix = parse_s3(url, prefix=True)
    files = files if files is not None else collect(root)
    client = s3_client(endpoint_url)
    config = transfer_config(part_size)
    known = {}
    for artifact in ModelDirectory(root, check_kinds=False).manifest.artifacts:
        for f in artifact.files:
            known[artifact.path if f.path == "." else f"{artifact.path}/{f.path}"] = f.sha256
    keys = []
    with progress_bar(sum(path.stat().st_size for path in files.values()), prefix or bucket, quiet) as bar:
        for name, path in files.items():
            digest = known.get(name) or sha256_file(path)
            upload_file(client, path, bucket, prefix + name, digest, config, bar)
            keys.append(prefix + name)
    extra = sorted(stale_keys(client, bucket, prefix, set(keys)))
    if extra:
        logger.warning("warning: %d object(s) under s3://%s/%s are not part of this model directory and would "
                       "land in /opt/ml/model too (e.g. %s): use a fresh prefix per model version",
                       len(extra), bucket, prefix, extra[0])
    return keys


def stale_keys(client, bucket: str, prefix: str, keys: set[str]) -> set[str]:
    found = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update(o["Key"] for o in page.get("Contents", []))
    return found - keys


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="the model directory (with manifest.json and code/)")
    parser.add_argument("-o", "--output", type=Path, help="the archive to write (model.tar.gz)")
    parser.add_argument("--level", type=int, default=6, choices=range(1, 10), metavar="1-9",
                        help="gzip level (default 6)")
    parser.add_argument("--upload", metavar="s3://bucket/key", help="upload the archive there")
    parser.add_argument("--uncompressed", metavar="s3://bucket/prefix/",
                        help="upload the directory's files under this prefix (no archive needed)")
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--part-size", type=int, default=64, metavar="MiB",
                        help="multipart part size and threshold, MiB (default 64, at least 5)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    if args.upload and not args.output:
        parser.error("--upload needs -o/--output (the archive to build and upload)")
    if not args.output and not args.uncompressed:
        parser.error("nothing to do: give -o model.tar.gz and/or --uncompressed s3://bucket/prefix/")
    try:
        if args.upload:
            parse_s3(args.upload, prefix=False)
        if args.uncompressed:
            parse_s3(args.uncompressed, prefix=True)
        if args.upload or args.uncompressed:
            check_s3_ready(args.part_size)
        files = collect(args.model_dir)
        if args.output:
            size, digest, count = pack(args.model_dir, args.output, args.level, files)
            print(f"{args.output}: {size / 1e6:.1f} MB ({size} bytes), {count} entries, sha256 {digest}")
            if args.upload:
                head = upload_archive(args.output, digest, args.upload, endpoint_url=args.endpoint_url,
                                      part_size=args.part_size, quiet=args.quiet)
                print(f"{args.upload}: uploaded {head['ContentLength']} bytes, "
                      f"S3 checksum {head.get('ChecksumSHA256', '?')}, metadata sha256 {digest}")
        if args.uncompressed:
            keys = upload_tree(args.model_dir, args.uncompressed, endpoint_url=args.endpoint_url,
                               part_size=args.part_size, quiet=args.quiet, files=files)
            bucket, prefix = parse_s3(args.uncompressed, prefix=True)
            print(f"s3://{bucket}/{prefix}: uploaded {len(keys)} files; ModelDataSource = "
                  f"{{'S3DataSource': {{'S3Uri': 's3://{bucket}/{prefix}', 'S3DataType': 'S3Prefix', "
                  f"'CompressionType': 'None'}}}}")
    except KeyboardInterrupt:
        print("package: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - PackageError, ModelDirectoryError, boto errors: one line
        print(f"package: error: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
