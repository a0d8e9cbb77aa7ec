"""Give freed heap memory back to the system between pipeline stages.

Why: each stage (segmentation, Whisper, alignment, embeddings) frees its working memory
when it ends, but glibc keeps the freed pages in its arenas, so the process's resident
size only grows and every stage's peak lands on top of the previous stages' leftovers.
``malloc_trim`` returns those pages; peak memory is then one stage's working set over the
models and the audio (eval/BENCHMARK.md). A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)


def _load_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl, macOS: nothing to call
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; True when the C library could."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))


class PeriodicRelease:
    """A progress hook (any arguments) that returns freed heap memory every ``every`` calls.

    Why: inside one long stage the model runs batch after batch, and glibc keeps pieces of
    each batch's freed working memory in its arenas that later batches do not reuse. On the
    hour the segmentation stage grew by 300 to 1 069 MiB over its start between runs of the
    same code; returning the free pages every few batches holds it near one batch's working
    set (eval/BENCHMARK.md). pyannote's ``Inference`` and pipelines call their hook once per
    batch or step.
    """

    def __init__(self, every: int = 4):
        if every < 1:
            raise ValueError("every must be at least 1")
        self.every = every
        self.calls = 0
        self.releases = 0

    def __call__(self, *args, **kwargs) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            self.releases += 1
            release_free_memory()
