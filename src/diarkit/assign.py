"""Give every word a speaker, then cut the words into subtitle-sized segments.

A word takes the speaker whose turns overlap it most; a word that overlaps no turn
(diarization and ASR disagree on where speech is) takes the nearest turn. Segments are
then rebuilt from the words: a new segment starts at a speaker change, after a sentence
end, after a pause, or when a segment grows too long to read as one subtitle.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from diarkit.result import Segment, Speaker, SpeakerTurn, Word

SENTENCE_END = (".", "?", "!", "。", "？", "！")


def assign_word_speakers(words: list[Word], turns: list[SpeakerTurn]) -> None:
    if not turns or not words:
        return
    starts = np.array([t.start for t in turns])
    ends = np.array([t.end for t in turns])
    labels = [t.speaker for t in turns]
    for word in words:
        overlap = np.minimum(ends, max(word.end, word.start + 1e-3)) - np.maximum(starts, word.start)
        per_speaker: dict[str, float] = defaultdict(float)
        for i in np.nonzero(overlap > 0)[0]:
            per_speaker[labels[i]] += float(overlap[i])
        if per_speaker:
            word.speaker = max(per_speaker, key=per_speaker.get)
        else:
            middle = (word.start + word.end) / 2
            distance = np.maximum(starts - middle, 0) + np.maximum(middle - ends, 0)
            word.speaker = labels[int(np.argmin(distance))]


def build_segments(words: list[Word], *, max_pause: float = 1.0, max_duration: float = 10.0,
                   max_chars: int = 160) -> list[Segment]:
    segments: list[Segment] = []
    current: list[Word] = []

    def close():
        if current:
            segments.append(Segment(
                start=current[0].start, end=max(w.end for w in current),
                text=" ".join(w.word for w in current), speaker=current[0].speaker, words=list(current),
            ))
            current.clear()

    for word in words:
        if current:
            previous = current[-1]
            if (word.speaker != previous.speaker
                    or previous.word.endswith(SENTENCE_END)
                    or word.start - previous.end > max_pause
                    or word.end - current[0].start > max_duration
                    or sum(len(w.word) + 1 for w in current) + len(word.word) > max_chars):
                close()
        current.append(word)
    close()
    return segments


def speaker_summary(turns: list[SpeakerTurn], words: list[Word]) -> list[Speaker]:
    """Speaking time per speaker (overlapping turns of one speaker counted once)."""
    by_speaker: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t in turns:
        by_speaker[t.speaker].append((t.start, t.end))
    word_counts: dict[str, int] = defaultdict(int)
    for w in words:
        if w.speaker is not None:
            word_counts[w.speaker] += 1
    speakers = []
    for label in sorted(set(by_speaker) | set(word_counts)):
        total, reach = 0.0, float("-inf")
        for start, end in sorted(by_speaker.get(label, [])):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        speakers.append(Speaker(label=label, speaking_time=round(total, 3), words=word_counts[label]))
    return speakers
