"""`prepare_graph`: the one way to get the category graph of a vocabulary.

Training, evaluation, prediction and the demo all call it, so a graph is found, extended or built
by the same rules everywhere:

1. a graph at hand (`base`: a checkpoint's, one the user gave), else the file at `path` when it
   exists, else the run's cached copy (`cache`);
2. labels that graph lacks are added by `extend_graph`: edges into each from the labels of the
   vocabulary the graph has, never touching the graph's own edges;
3. with no graph at all (and a source other than "file"), `build_graph`: over the seen labels
   alone, then extended with the unseen ones; saved to `path` and `cache`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .build import VocabularyMemo, build_graph, extend_graph
from .encoders import resolve_encoder
from .graph import CategoryGraph

if TYPE_CHECKING:
    from ..config import GraphCfg

_logger = logging.getLogger(__name__)

EXTEND_SOURCE = "embedding"  # how labels missing from a given file are linked (a file cannot say)


def text_tower_encoder(label_encoder: Any) -> Callable[[list[str]], np.ndarray]:
    """A model's own (frozen) CLIP text tower as a graph text encoder: names -> [K, D] numpy.

    Embeddings come through the label encoder's cache, so a vocabulary the model scores next is
    not embedded twice.
    """
    import torch

    def encode(names: list[str]) -> np.ndarray:
        with torch.no_grad():
            return label_encoder.encode_labels(list(names)).float().cpu().numpy()

    encode.__name__ = "clip_text_tower"
    return encode


def _resolve(encoder: str, clip_encoder: Callable[[list[str]], Any] | None) -> Any:
    if encoder == "clip":
        if clip_encoder is None:
            raise ValueError("graph.encoder: 'clip' needs the model's text tower; none was given")
        return clip_encoder
    return encoder


def prepare_graph(
    labels: Sequence[str],
    *,
    seen: Sequence[str] | None = None,
    cfg: "GraphCfg | None" = None,
    base: CategoryGraph | None = None,
    path: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    clip_encoder: Callable[[list[str]], Any] | None = None,
    progress: bool = False,
) -> CategoryGraph:
    """The category graph for `labels` (see the module docstring for the order of the rules).

    Args:
        labels: the vocabulary to score.
        seen: the labels seen in training (a new build links unseen labels from these only).
        cfg: how to build or extend (`GraphCfg`: source, encoder, candidates, cut, LLM); default
            `GraphCfg()`. Its `path` is not read here: pass it as `path`.
        base: a graph at hand (a checkpoint's or a user's); extended when it lacks labels.
        path: a graph file to use when it exists, else where a new build is saved.
        cache: the run's copy of the graph (e.g. `<output_dir>/graph.json`): read when it exists
            and no other graph is at hand, written after a build.
        clip_encoder: the model's text tower (`text_tower_encoder`), for `cfg.encoder == "clip"`.
        progress: show a progress bar while an LLM builds the graph.

    Returns:
        A graph holding every label of `labels`.

    Raises:
        FileNotFoundError: source "file" and no graph at `path`.
        ValueError: bad labels, or a graph file that is not valid (naming the file).
    """
    from ..config import GraphCfg

    g = cfg or GraphCfg()
    labels = list(labels)
    graph = base
    for where in (path, cache):
        if graph is None and where is not None and Path(where).is_file():
            graph = CategoryGraph.load(where)
    if graph is None and g.source == "file":
        raise FileNotFoundError(f"graph.path: {path} does not exist (graph.source is 'file')")
    encoder = _resolve(g.encoder, clip_encoder)
    opts: dict[str, Any] = dict(
        candidates=g.candidates, relative_cut=g.relative_cut, max_neighbors=g.max_neighbors,
        llm_backend=g.llm_backend, llm_model=g.llm_model, base_url=g.llm_base_url, progress=progress,
        llm_mode=g.llm_mode, mutual_k=g.mutual_k, min_pmi=g.min_pmi, llm_concurrency=g.llm_concurrency,
    )  # fmt: skip
    if graph is not None:
        missing = [n for n in labels if n not in graph]
        if not missing:
            return graph
        source = EXTEND_SOURCE if g.source == "file" else g.source
        _logger.info(
            "category graph: %d label(s) not in the graph, linked from the others (%s source): %s",
            len(missing), source, ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else ""),
        )  # fmt: skip
        present = [n for n in labels if n in graph]
        memo = VocabularyMemo(resolve_encoder(encoder), labels)
        return extend_graph(graph, missing, link_from=present, link_new=g.link_unseen, source=source, encoder=memo, **opts)
    graph = build_graph(labels, seen=seen, source=g.source, encoder=encoder, link_unseen=g.link_unseen, **opts)
    for where in (cache, path):
        if where is not None:
            graph.save(where)
    return graph
