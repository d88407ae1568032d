"""c2srt: open-vocabulary multi-label image recognition (C2SRT and the MKT baseline) on open_clip."""

__version__ = "0.1.0"
