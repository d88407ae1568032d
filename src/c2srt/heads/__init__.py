"""Region heads (MKT, ISR) and IST: importing the package registers every head in `HEADS`.

As timm's `models/__init__.py` does, this package imports each head module, whose registry entry
runs at import; `heads/base.py` never imports its subclasses.
"""

from . import isr, mkt  # noqa: F401  (each registers its head)
from .base import HEADS, CosineScore, HeadOutput, PatchPoolingHead, build_head, fuse_block, fuse_scores, list_heads, register_head, scaled_cosine

__all__ = [
    "HEADS",
    "CosineScore",
    "HeadOutput",
    "PatchPoolingHead",
    "build_head",
    "fuse_block",
    "fuse_scores",
    "list_heads",
    "register_head",
    "scaled_cosine",
]
