"""diarkit: who said what, when. Speaker diarization and transcription, offline."""

__version__ = "0.1.0"

__all__ = ["__version__"]
