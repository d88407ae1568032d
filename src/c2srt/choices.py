"""The closed sets of values a config names, each written once.

The code that uses a set parses its values with these enums (`registry.parse_enum`), and the
config's validation reads its choices from them, so a new value is added in one place. Sets of
names filled by registration (heads, datasets) are registries instead (`c2srt.registry`).
"""

from __future__ import annotations

import enum


class Scoring(str, enum.Enum):
    """How a region head without IST turns its two streams into logits (`model.head.scoring`)."""

    FUSED = "fused"  # MKT's fusion: each stream L2-normalised across the labels scored, averaged
    COSINE = "cosine"  # IST's rule without IST: e^s cos(f_img, t) per label, s learnt


class IstMode(str, enum.Enum):
    """IST, the graph transfer over the category graph (`model.ist.mode`)."""

    OFF = "off"  # no IST: the region head's scores
    LABEL = "label"  # refine the label embeddings once per vocabulary
    IMAGE = "image"  # per-image node features (the paper's)


class Protocol(str, enum.Enum):
    """Evaluation protocols (`eval.protocol`)."""

    NUS_WIDE = "nus_wide"  # all rows; ZSL = unseen columns, GZSL = all; K = 3, 5
    OPEN_IMAGES = "open_images"  # per block: rows with a positive in it; mAP over annotated columns; K = 10, 20
    GENERIC = "generic"  # as NUS-WIDE, for any dataset's masks, plus a seen block


class EmptyColumn(str, enum.Enum):
    """What a column without any positive gets as AP (`eval.empty`)."""

    ZERO = "zero"  # AP 0, counted in the mean (the published NUS-WIDE convention)
    SKIP = "skip"  # AP NaN, left out of the mean


class GraphSource(str, enum.Enum):
    """Where a category graph comes from (`graph.source`)."""

    EMBEDDING = "embedding"
    LLM = "llm"
    FILE = "file"


class LocalLlmMode(str, enum.Enum):
    """How the local language model builds a graph (`graph.llm_mode`; graph/contexts.py, graph/llm.py)."""

    CONTEXTS = "contexts"  # every label's first token read after photo contexts: PMI both ways, mutual top-k
    PMI = "pmi"  # the model judges text-embedding candidates by PMI of a relation sentence (version 1)


class CalibrationMethod(str, enum.Enum):
    """The map from decision scores to P(label present) (`calibration.method`)."""

    PLATT = "platt"  # sigma(a s + b), a >= 0: a logistic in the decision score
    ISOTONIC = "isotonic"  # monotone steps (pool-adjacent-violators), interpolated
