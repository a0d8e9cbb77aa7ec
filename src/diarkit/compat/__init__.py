"""One module per third-party library whose internals diarkit uses.

Everything diarkit takes from whisperx, faster-whisper, pyannote and uvicorn beyond their
documented entry points is imported here and nowhere else, so a library upgrade breaks in
one known place (``tests/test_compat.py`` imports every symbol and checks the attributes
diarkit relies on).
"""
