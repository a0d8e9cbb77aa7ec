"""Freed heap memory handed back to the system: between stages and inside long ones."""

from __future__ import annotations

import pytest

from diarkit.memory import PeriodicRelease, release_free_memory


def test_periodic_release_returns_memory_every_nth_call_whatever_the_hook_arguments():
    hook = PeriodicRelease(3)
    hook(completed=0, total=10)  # pyannote Inference's form
    hook("embeddings", None, total=10, completed=1)  # pyannote pipelines' form
    for _ in range(5):
        hook()
    assert hook.calls == 7 and hook.releases == 2
    with pytest.raises(ValueError):
        PeriodicRelease(0)


def test_release_free_memory_works_on_this_c_library():
    import ctypes.util

    libc = ctypes.util.find_library("c") or ""
    if "musl" in libc:
        pytest.skip("no malloc_trim outside glibc")
    blocks = [bytearray(64 << 10) for _ in range(2000)]  # 128 MiB of heap
    del blocks[::2]  # holes between live blocks: free() keeps them, malloc_trim returns their pages
    assert release_free_memory() is True
    del blocks
