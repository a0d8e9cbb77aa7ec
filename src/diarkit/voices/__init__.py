"""A voice library: recurring speakers enrolled once, named in every later recording.

``library``: entries and where they live (a folder or an ``s3://`` prefix), checked against
the speaker-embedding model; ``speech``: a speaker's single-speaker speech and its pooled
embedding; ``match``: one-to-one naming of a result's speakers; ``command``: ``diarkit voices``.
"""
