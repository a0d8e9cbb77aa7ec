"""diarkit evaluation tools: score diarization/transcripts, run diarkit on a dataset, simulate data.

Run as ``python -m eval {score,run,simulate} ...`` from the repository root.
"""

import os

# pyannote's telemetry reads this when pyannote.audio is imported; evaluation must never phone home.
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

__all__ = ["readers", "scoring", "report", "plots", "simulate", "run"]
