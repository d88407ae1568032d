"""The package version, in a module of its own so that anything may import it (open_clip's `version.py`)."""

__version__ = "0.1.0"
