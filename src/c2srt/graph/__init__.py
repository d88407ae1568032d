"""Category graphs: which labels inform which, built from text embeddings, an LLM, or a file.

Heavy dependencies (torch, transformers, matplotlib) are imported inside the functions that use
them, so importing this package is cheap.
"""

from __future__ import annotations

from .build import GraphSource, build_graph, extend_graph
from .embedding import (
    adaptive_cut,
    cosine_similarity,
    nearest_candidates,
    similarity_neighbors,
)
from .encoders import callable_encoder, minilm_encoder
from .graph import DROP_REASONS, GRAPH_FORMAT, GRAPH_VERSION, CategoryGraph
from .prepare import prepare_graph, text_tower_encoder

__all__ = [
    "DROP_REASONS",
    "GRAPH_FORMAT",
    "GRAPH_VERSION",
    "CategoryGraph",
    "GraphSource",
    "adaptive_cut",
    "build_graph",
    "extend_graph",
    "callable_encoder",
    "cosine_similarity",
    "minilm_encoder",
    "nearest_candidates",
    "prepare_graph",
    "similarity_neighbors",
    "text_tower_encoder",
]
