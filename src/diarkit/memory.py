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
