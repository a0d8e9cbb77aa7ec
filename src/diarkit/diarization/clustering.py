"""Speaker clustering: agglomerative clustering, then a speaker-count check on long audio.

Chunk-level d-vectors (a few seconds of one local speaker) are noisy, so a threshold
that keeps two similar voices apart also splits one voice in two elsewhere: the speaker
count is fragile. One embedding over *all* of a cluster's single-speaker speech is far
steadier (on the tuning conversations, same-speaker halves score >= 0.88 cosine, different
speakers <= 0.78). So after agglomerative clustering, each cluster is split in two with
k-means on its chunk embeddings, each half is embedded from its own pooled audio, and the
split is kept when the halves sound like different people. Then the reverse: a speaker
with little speech (under 8 s and under 10% of the file's single-speaker speech) is most
often a fragment of another voice, so it joins the speaker whose pooled embedding is
closest when they are at least at cosine 0.78 (eval/RESULTS.md). The share keeps short
files, where every speaker talks for a few seconds, out of it.

The cosines above are resemblyzer's. The pooled embeddings may come from another encoder
than the chunk embeddings (the model directory's ``speaker-check`` artifact, with its own
calibrated thresholds): under a music bed resemblyzer scores two voices as high as one.
"""

from __future__ import annotations

import logging

import numpy as np
from diarkit.compat.pyannote import AgglomerativeClustering, SlidingWindow, SlidingWindowFeature
from diarkit.audio import pooled_speech
from sklearn.cluster import KMeans

logger = logging.getLogger(__name__)


def exclusive_speech_frames(segmentations: SlidingWindowFeature, frames: SlidingWindow,
                            members: np.ndarray) -> np.ndarray:
    """Frames (of the whole file) where the (chunk, local speaker) ``members`` speak alone.

    A frame counts when at least half of the chunks that cover it agree, so a voice is
    pooled from its clean stretches rather than from overlaps and turn edges.
    """
    data = segmentations.data  # (chunks, frames, local speakers), binarized
    num_chunks, num_frames, num_local = data.shape
    # one local speaker at a time, in booleans: the split and merge checks call this for
    # every candidate speaker (a tenth of the time of multiplying the whole float array)
    ours = np.zeros((num_chunks, num_frames), dtype=bool)
    others = np.zeros((num_chunks, num_frames), dtype=bool)
    for s in range(num_local):
        active = data[:, :, s] != 0
        ours |= active & members[:, s, None]
        others |= active & ~members[:, s, None]
    exclusive = ours & ~others
    chunks = segmentations.sliding_window
    offsets = np.rint(np.array([chunks[c].start for c in range(num_chunks)]) / frames.step).astype(int)
    total = int(offsets[-1]) + num_frames
    index = (offsets[:, None] + np.arange(num_frames)[None, :]).ravel()
    votes = np.bincount(index, weights=exclusive.ravel(), minlength=total)  # counts: exact in float64
    cover = np.bincount(index, minlength=total)
    return votes >= 0.5 * np.maximum(cover, 1)


def exclusive_speech_runs(segmentations: SlidingWindowFeature, frames: SlidingWindow,
                          members: np.ndarray, num_samples: int, sample_rate: int) -> np.ndarray:
    """The samples of ``exclusive_speech_frames`` as (start, end) runs, in order, disjoint."""
    keep = exclusive_speech_frames(segmentations, frames, members)
    edges = np.rint((frames.start + np.arange(len(keep) + 1) * frames.step) * sample_rate).astype(np.int64)
    flips = np.flatnonzero(np.diff(np.concatenate([[False], keep, [False]]).astype(np.int8)))
    runs = np.stack([edges[flips[0::2]], edges[flips[1::2]]], axis=1) if len(flips) else np.zeros((0, 2), np.int64)
    runs = np.clip(runs, 0, num_samples)
    return runs[runs[:, 1] > runs[:, 0]]


class SplitCheckedClustering(AgglomerativeClustering):
    """pyannote's agglomerative clustering plus the split check and small-speaker merge above.

    ``split_threshold`` is a cosine similarity between the two halves' pooled embeddings:
    below it, they are two speakers. ``small_merge_threshold`` (None: no merge) is the pooled
    cosine at which a small speaker joins its closest one. Both are skipped when the caller
    fixes the number of speakers; the split never goes above ``max_clusters`` and the merge
    never below ``min_clusters``.
    """

    def __init__(self, encoder, *, split_threshold: float = 0.75,
                 min_split_seconds: float = 2.0, min_split_members: int = 12,
                 max_pooled_seconds: float = 120.0, small_merge_threshold: float | None = 0.78,
                 small_seconds: float = 8.0, small_share: float = 0.1, metric: str = "cosine"):
        super().__init__(metric=metric)
        self._pooled_cache: dict[bytes, np.ndarray | None] | None = None
        self.encoder = encoder
        self.small_merge_threshold = small_merge_threshold
        self.small_seconds = small_seconds
        self.small_share = small_share
        self.max_pooled_seconds = max_pooled_seconds
        self.split_threshold = split_threshold
        self.min_split_seconds = min_split_seconds
        self.min_split_members = min_split_members

    def __call__(self, embeddings, segmentations=None, num_clusters=None, min_clusters=None,
                 max_clusters=None, file=None, frames=None, **kwargs):
        hard, soft, centroids = super().__call__(
            embeddings=embeddings, segmentations=segmentations, num_clusters=num_clusters,
            min_clusters=min_clusters, max_clusters=max_clusters, **kwargs)
        if num_clusters is not None or file is None or segmentations is None or frames is None:
            return hard, soft, centroids
        # pooled embeddings of this file, by member set: the split check's accepted halves are
        # the speakers the merge embeds again (one file only: the cache dies with the call)
        self._pooled_cache = {}
        try:
            return self._refine(hard, soft, centroids, embeddings, segmentations, frames, file,
                                min_clusters, max_clusters)
        finally:
            self._pooled_cache = None

    def _refine(self, hard, soft, centroids, embeddings, segmentations, frames, file, min_clusters,
                max_clusters):
        refined = self.split(hard, embeddings, segmentations, frames, file, max_clusters)
        if self.small_merge_threshold is not None:
            refined = self.merge_small(refined, segmentations, frames, file, min_clusters)
        if np.array_equal(refined, hard):
            return hard, soft, centroids
        return refined, None, self.centroids_of(refined, embeddings)

    def pooled_embedding(self, waveform: np.ndarray, segmentations, frames, members,
                         sample_rate) -> np.ndarray | None:
        cache = getattr(self, "_pooled_cache", None)
        key = np.packbits(members).tobytes() + str(members.shape).encode()
        if cache is not None and key in cache:
            return cache[key]
        embedding = self._pooled_embedding(waveform, segmentations, frames, members, sample_rate)
        if cache is not None:
            cache[key] = embedding
        return embedding

    def _pooled_embedding(self, waveform: np.ndarray, segmentations, frames, members,
                          sample_rate) -> np.ndarray | None:
        runs = exclusive_speech_runs(segmentations, frames, members, waveform.shape[0], sample_rate)
        if (runs[:, 1] - runs[:, 0]).sum() < self.min_split_seconds * sample_rate:
            return None
        import torch

        speech = pooled_speech(waveform, runs, int(self.max_pooled_seconds * sample_rate))
        embedding = self.encoder(torch.from_numpy(speech)[None, None], masks=None)[0]
        return None if np.isnan(embedding[0]) else embedding

    def split(self, hard: np.ndarray, embeddings: np.ndarray, segmentations, frames, file,
              max_clusters) -> np.ndarray:
        waveform = file["waveform"].reshape(-1).numpy()
        sample_rate = file["sample_rate"]
        valid = ~np.any(np.isnan(embeddings), axis=2)
        hard = hard.copy()
        limit = max_clusters if max_clusters is not None else np.inf
        queue = list(range(int(hard.max()) + 1))
        while queue and int(hard.max()) + 1 < limit:
            k = queue.pop(0)
            selected = (hard == k) & valid
            if selected.sum() < 2 * self.min_split_members:
                continue
            vectors = embeddings[selected]
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            halves = KMeans(n_clusters=2, n_init=5, random_state=0).fit_predict(vectors)
            if min(np.sum(halves == 0), np.sum(halves == 1)) < self.min_split_members:
                continue
            new = int(hard.max()) + 1
            candidate = hard.copy()
            rows, cols = np.nonzero(selected)
            candidate[rows[halves == 1], cols[halves == 1]] = new
            first = self.pooled_embedding(waveform, segmentations, frames, candidate == k, sample_rate)
            second = self.pooled_embedding(waveform, segmentations, frames, candidate == new, sample_rate)
            if first is None or second is None:
                continue
            similarity = float(first @ second)  # the encoder returns unit vectors
            logger.debug("speaker %d: halves at cosine %.3f", k, similarity)
            if similarity < self.split_threshold:
                logger.info("speaker %d split in two (halves at cosine %.2f)", k, similarity)
                hard = candidate
                queue += [k, new]
        return hard

    def merge_small(self, hard: np.ndarray, segmentations, frames, file, min_clusters) -> np.ndarray:
        waveform = file["waveform"].reshape(-1).numpy()
        sample_rate = file["sample_rate"]
        hard = hard.copy()
        clusters = [int(k) for k in np.unique(hard) if k >= 0]
        # frame counts, not sample masks: cheap enough to run over every speaker of a long file
        seconds = {k: exclusive_speech_frames(segmentations, frames, hard == k).sum() * frames.step
                   for k in clusters}
        small_below = min(self.small_seconds, self.small_share * sum(seconds.values()))
        small = sorted((k for k in clusters if seconds[k] < small_below), key=seconds.get)
        if not small:
            return hard
        pooled = {k: self.pooled_embedding(waveform, segmentations, frames, hard == k, sample_rate)
                  for k in clusters}
        floor = min_clusters or 1
        for k in small:
            if len(pooled) <= floor or pooled[k] is None or seconds[k] >= small_below:
                continue
            others = [j for j in pooled if j != k and pooled[j] is not None]
            if not others:
                continue
            similarity = {j: float(pooled[k] @ pooled[j]) for j in others}
            target = max(similarity, key=similarity.get)
            if similarity[target] < self.small_merge_threshold:
                continue
            logger.info("speaker %d (%.1f s) merged into speaker %d (pooled cosine %.2f)",
                        k, seconds[k], target, similarity[target])
            hard[hard == k] = target
            seconds[target] += seconds[k]  # the union's exclusive speech, near enough for this test
            del pooled[k]
            pooled[target] = self.pooled_embedding(waveform, segmentations, frames, hard == target, sample_rate)
        # labels 0..K-1 again, in order of first use
        relabel = {old: new for new, old in enumerate(int(k) for k in np.unique(hard) if k >= 0)}
        out = hard.copy()
        for old, new in relabel.items():
            out[hard == old] = new
        return out

    @staticmethod
    def centroids_of(hard: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        num_clusters = int(hard.max()) + 1
        centroids = np.zeros((num_clusters, embeddings.shape[-1]), dtype=np.float32)
        for k in range(num_clusters):
            vectors = embeddings[(hard == k) & ~np.any(np.isnan(embeddings), axis=2)]
            if len(vectors):
                centroids[k] = np.mean(vectors, axis=0)
        return centroids
