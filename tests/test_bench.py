"""The benchmark's media builder and page-cache settling (fast), the 60-minute memory bound (slow, `make bench`)."""

from __future__ import annotations

import ctypes
import json
import mmap
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED_DATA

from eval.bench import (RSS_LIMIT_MIB, SAMPLE_RATE, VOICE_SHIFTS, build_many_voices_media, build_media,
                        evict_library_pages, run_diarkit_child, source_files)


def _sources(work):
    if not (SHARED_DATA / "ami-excerpts").is_dir() or not (SHARED_DATA / "librispeech-test-other").is_dir():
        pytest.skip(f"{SHARED_DATA} not found: the shared evaluation data is not on this machine")
    return source_files(SHARED_DATA, work)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return _sources(tmp_path_factory.mktemp("bench-sources"))


def test_media_builder_is_exact_and_deterministic(sources, tmp_path):
    # AMI excerpts and simulated conversations, interleaved
    assert sources[0].suffix == ".flac" and sources[1].suffix == ".wav"
    a = build_media(0.5, tmp_path / "a.wav", sources)
    b = build_media(0.5, tmp_path / "b.wav", sources)
    assert a["samples"] == b["samples"] == 30 * SAMPLE_RATE
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    info = sf.info(str(tmp_path / "a.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SAMPLE_RATE, 1, "PCM_16", 30 * SAMPLE_RATE)

    # content: the first source, then the next ones; a shorter file is a prefix of a longer one
    longer = build_media(1.5, tmp_path / "c.wav", sources)
    assert longer["samples"] == 90 * SAMPLE_RATE and longer["pieces"] >= 2
    short, _ = sf.read(str(tmp_path / "a.wav"), dtype="int16")
    long_, _ = sf.read(str(tmp_path / "c.wav"), dtype="int16")
    assert np.array_equal(short, long_[: short.size])
    first, _ = sf.read(str(sources[0]), dtype="int16")
    n = min(first.size, short.size)
    assert np.array_equal(short[:n], first[:n])
    assert np.abs(long_.astype(np.float32)).max() > 1000  # real audio, not silence


def test_many_voices_media_has_30_voices_and_is_deterministic(sources, tmp_path):
    a = build_many_voices_media(10, tmp_path / "a.wav", SHARED_DATA)
    b = build_many_voices_media(10, tmp_path / "b.wav", SHARED_DATA)
    assert a["samples"] == 600 * SAMPLE_RATE and a["duration"] == 600
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    # every LibriSpeech speaker at every shift, plus AMI meetings: at least 30 distinct voices
    assert a["libri_voices"] == 10 * len(VOICE_SHIFTS) >= 30 and a["ami_excerpts"] >= 5
    other = build_many_voices_media(1, tmp_path / "c.wav", SHARED_DATA, seed=1)
    first, _ = sf.read(str(tmp_path / "a.wav"), dtype="int16", frames=60 * SAMPLE_RATE)
    second, _ = sf.read(str(tmp_path / "c.wav"), dtype="int16")
    assert not np.array_equal(first, second)  # the seed orders the voices
    assert np.abs(first.astype(np.float32)).max() > 1000


@pytest.mark.slow
def test_sixty_minutes_within_memory_bound(sources, tmp_path, model_dir):
    media = build_media(60, tmp_path / "bench_60min.wav", sources)
    assert media["duration"] == 3600
    run = run_diarkit_child(media["path"], model_dir, tmp_path / "out")
    assert run["duration"] == pytest.approx(3600, abs=0.1)
    assert run["peak_rss_mib"] <= RSS_LIMIT_MIB, f"peak RSS {run['peak_rss_mib']:.0f} MiB over 2.3 GB"
    assert run["num_speakers"] >= 2 and run["num_words"] > 1000
    doc = json.loads((tmp_path / "out" / "bench_60min.json").read_text())
    assert doc["speakers"] and any(seg["words"] for seg in doc["segments"])
    assert all(w.get("speaker") for seg in doc["segments"] for w in seg["words"][:5])


def _resident_pages(path) -> int:
    """Pages of ``path`` in the page cache (mincore(2) over a shared mapping of the file)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = os.path.getsize(path)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), size) as mapped:
        anchor = ctypes.c_char.from_buffer(mapped)
        try:
            vec = (ctypes.c_ubyte * pages)()
            libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
            assert libc.mincore(ctypes.addressof(anchor), size, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(v & 1 for v in vec)
        finally:
            del anchor


def test_library_pages_are_dropped_before_a_measured_child(tmp_path):
    """The bench evicts shared libraries from the page cache, so RSS does not depend on how they were read."""
    lib = tmp_path / "site-packages" / "libfake.so.1"
    lib.parent.mkdir()
    lib.write_bytes(os.urandom(8 << 20))
    os.sync()  # written pages are dirty until written back; DONTNEED drops clean pages only
    lib.read_bytes()
    assert _resident_pages(lib) > 0
    other = tmp_path / "site-packages" / "weights.bin"  # not a library: left alone
    other.write_bytes(os.urandom(1 << 20))
    os.sync()
    done = evict_library_pages([tmp_path])
    assert done["files"] == 1 and done["mib"] == pytest.approx(8.0)
    assert _resident_pages(lib) == 0
    assert _resident_pages(other) > 0
    # the default roots are the environment's prefixes, where torch's libraries live
    assert evict_library_pages()["files"] > 100
