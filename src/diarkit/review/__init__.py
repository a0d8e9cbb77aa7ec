"""``diarkit review``: a local page where a transcriber checks and corrects who said what."""
