"""resemblyzer: its VoiceEncoder, whose LSTM diarkit runs directly on batched windows (0.1.x)."""

from __future__ import annotations

from resemblyzer import VoiceEncoder

__all__ = ["VoiceEncoder", "VOICE_ENCODER_ATTRIBUTES"]

#: modules of VoiceEncoder diarkit calls (``lstm`` -> last hidden state -> ``linear`` -> ``relu``)
VOICE_ENCODER_ATTRIBUTES = ("lstm", "linear", "relu", "device")
