"""`build_graph`: one entry point for the three graph sources (embedding, llm, file), with provenance.

It maps 1:1 onto `c2srt graph build --labels FILE [--seen FILE] --source ... --out graph.json`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

import numpy as np

from .embedding import (
    DEFAULT_CANDIDATES,
    DEFAULT_MAX_NEIGHBORS,
    DEFAULT_MIN_SIM,
    DEFAULT_RELATIVE_CUT,
    adaptive_cut,
    cosine_similarity,
    nearest_candidates,
    similarity_neighbors,
)
from .encoders import encoder_name, resolve_encoder
from .graph import CategoryGraph
from .parse import ParseReport, VocabularyMatcher, clean_pairs

_logger = logging.getLogger(__name__)

# Cut defaults of the LLM source, on the model's strengths (see llm.py). Measured on the 80 COCO
# classes with the local PMI scorer: these keep 0-9 neighbours per class (mean 4.3).
LLM_LOCAL_RELATIVE_CUT = 0.8
LLM_LOCAL_MIN_STRENGTH = 0.5
# An endpoint model already chose its neighbours: no relative cut, only a floor.
LLM_OPENAI_RELATIVE_CUT = 0.0
LLM_OPENAI_MIN_STRENGTH = 0.1


class GraphSource(str, Enum):
    """Where a category graph comes from."""

    EMBEDDING = "embedding"
    LLM = "llm"
    FILE = "file"


def _check_vocabulary(labels: Sequence[str], seen: Sequence[str] | None) -> tuple[list[str], list[str] | None]:
    labels = list(labels)
    first: dict[str, int] = {}
    for i, name in enumerate(labels):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"label #{i} is empty or not a string: {name!r}")
        if name in first:
            raise ValueError(f"label {name!r} appears twice (#{first[name]} and #{i})")
        first[name] = i
    if seen is None:
        return labels, None
    seen = list(seen)
    unknown = [n for n in seen if n not in first]
    if unknown:
        raise ValueError(f"seen label {unknown[0]!r} is not in the vocabulary ({len(unknown)} unknown)")
    return labels, seen


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="label")


def build_graph(
    labels: Sequence[str],
    *,
    seen: Sequence[str] | None = None,
    source: str | GraphSource = GraphSource.EMBEDDING,
    path: str | os.PathLike[str] | None = None,
    encoder: str | Callable[[list[str]], Any] | None = None,
    candidates: int = DEFAULT_CANDIDATES,
    relative_cut: float | None = None,
    min_strength: float | None = None,
    max_neighbors: int = DEFAULT_MAX_NEIGHBORS,
    llm_backend: str = "local",
    llm_model: str | None = None,
    llm_mode: str = "pmi",
    base_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    scorer: Any = None,
    progress: bool = False,
) -> CategoryGraph:
    """Build the category graph of a vocabulary.

    Args:
        labels: the vocabulary (seen and unseen labels), unique.
        seen: the labels seen in training (recorded in the graph; must be in `labels`).
        source: "embedding" (text-embedding neighbours, adaptive cut), "llm" (a language model
            picks among the `candidates` nearest labels) or "file" (load `path` and check it).
        path: graph JSON for source "file".
        encoder: text encoder for similarities/candidates: None or "minilm" (all-MiniLM-L6-v2), or
            a callable names -> [K, D] (e.g. the CLIP text tower).
        candidates: nearest labels considered per category.
        relative_cut: keep strength >= relative_cut * best strength of the category. Default per
            source: 0.9 (embedding), 0.8 (llm local), 0 (llm openai).
        min_strength: absolute floor. Default per source: 0.3 cosine (embedding), 0.5 (llm local),
            0.1 (llm openai).
        max_neighbors: cap on neighbours per category.
        llm_backend: "local" (Gemma 3 270M, offline) or "openai" (OpenAI-compatible endpoint).
        llm_model: endpoint model id (openai) or a local transformers model folder (local).
        llm_mode: local backend mode (only "pmi" so far).
        base_url: OpenAI-compatible base URL (API key from $OPENAI_API_KEY).
        cache_dir: cache root for the converted local model and endpoint answers
            (default $C2SRT_CACHE or ~/.cache/c2srt).
        scorer: a ready `llm.RelationScorer` (overrides `llm_backend`; tests, custom backends).
        progress: show a tqdm progress bar.

    Returns:
        The graph, with `provenance` (source, model, prompt hash, date, parameters) and `report`
        (dropped answers by reason).

    Raises:
        ValueError: bad vocabulary, unknown source/backend, or (source "file") a graph whose
            labels do not cover the vocabulary.

    Example:
        >>> g = build_graph(["dog", "cat", "fork"], source="embedding")  # doctest: +SKIP
    """
    labels, seen = _check_vocabulary(labels, seen)
    try:
        src = GraphSource(source)
    except ValueError as err:
        raise ValueError(f"unknown graph source {source!r}; valid sources: {', '.join(s.value for s in GraphSource)}") from err
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if src is GraphSource.FILE:
        return _from_file(labels, seen, path)
    enc = resolve_encoder(encoder)
    emb = enc(labels)
    sim = cosine_similarity(emb)  # [K, K]
    prov: dict[str, Any] = {"source": src.value, "date": _now(), "encoder": encoder_name(enc), "candidates": candidates, "num_labels": len(labels)}
    if src is GraphSource.EMBEDDING:
        rc = DEFAULT_RELATIVE_CUT if relative_cut is None else relative_cut
        ms = DEFAULT_MIN_SIM if min_strength is None else min_strength
        rows = similarity_neighbors(sim, candidates=candidates, relative_cut=rc, min_sim=ms, max_neighbors=max_neighbors)
        nbrs = {labels[i]: [(labels[j], s) for j, s in row] for i, row in enumerate(rows)}
        prov.update(model=encoder_name(enc), parameters={"relative_cut": rc, "min_strength": ms, "max_neighbors": max_neighbors})
        return CategoryGraph(labels, nbrs, seen=seen, provenance=prov)
    return _from_llm(
        labels, seen, sim, prov,
        candidates=candidates, relative_cut=relative_cut, min_strength=min_strength, max_neighbors=max_neighbors,
        scorer=scorer, llm_backend=llm_backend, llm_model=llm_model, llm_mode=llm_mode, base_url=base_url,
        cache_dir=cache_dir, progress=progress,
    )  # fmt: skip


def _from_file(labels: list[str], seen: list[str] | None, path: str | os.PathLike[str] | None) -> CategoryGraph:
    if path is None:
        raise ValueError("source 'file' needs a graph file (--graph-file)")
    graph = CategoryGraph.load(path)
    missing = [n for n in labels if n not in graph]
    if missing:
        raise ValueError(f"{path}: label {missing[0]!r} of the vocabulary is not in the graph ({len(missing)} missing)")
    sub = graph.subgraph(labels)
    if seen is not None:
        sub.seen = list(seen)
    sub.provenance = dict(graph.provenance, source="file", file=str(path), imported=_now())
    sub.provenance.pop("subgraph_of", None)
    return sub


def _from_llm(
    labels: list[str],
    seen: list[str] | None,
    sim: np.ndarray,
    prov: dict[str, Any],
    *,
    candidates: int,
    relative_cut: float | None,
    min_strength: float | None,
    max_neighbors: int,
    scorer: Any,
    llm_backend: str,
    llm_model: str | None,
    llm_mode: str,
    base_url: str | None,
    cache_dir: str | os.PathLike[str] | None,
    progress: bool,
) -> CategoryGraph:
    if scorer is None:
        from .llm import make_scorer

        scorer = make_scorer(llm_backend, model=llm_model, base_url=base_url, cache_dir=cache_dir, mode=llm_mode)
    desc = scorer.describe()
    local = desc.get("backend") == "local"
    rc = relative_cut if relative_cut is not None else (LLM_LOCAL_RELATIVE_CUT if local else LLM_OPENAI_RELATIVE_CUT)
    ms = min_strength if min_strength is not None else (LLM_LOCAL_MIN_STRENGTH if local else LLM_OPENAI_MIN_STRENGTH)
    cand_idx = nearest_candidates(sim, candidates)
    matcher = VocabularyMatcher(labels)
    index = {n: i for i, n in enumerate(labels)}
    report = ParseReport()
    nbrs: dict[str, list[tuple[str, float]]] = {}
    bar = _progress(len(labels), progress, f"graph ({desc.get('backend')} LLM)")
    step = max(1, int(getattr(scorer, "batch_size", 1)))
    try:
        for start in range(0, len(labels), step):
            batch = [(labels[i], [labels[j] for j in cand_idx[i]]) for i in range(start, min(start + step, len(labels)))]
            for (cat, cands), answer in zip(batch, scorer.relate(batch)):
                for group in ("dropped", "repaired"):
                    for key, n in getattr(answer.report, group).items():
                        getattr(report, group)[key] += n
                for reason, ex in answer.report.examples.items():
                    report.examples.setdefault(reason, []).extend(ex[: max(0, 5 - len(report.examples.get(reason, [])))])
                pairs = clean_pairs(cat, answer.pairs, matcher, report, candidates=cands)
                kept = adaptive_cut([(index[n], s) for n, s in pairs], relative_cut=rc, min_score=ms, max_neighbors=max_neighbors)
                below = len(pairs) - len(kept)
                if below:
                    report.dropped["below_cut"] += below
                nbrs[cat] = [(labels[j], s) for j, s in kept]
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    prov.update(
        {k: v for k, v in desc.items() if k != "backend"},
        llm_backend=desc.get("backend"),
        parameters={"relative_cut": rc, "min_strength": ms, "max_neighbors": max_neighbors},
    )
    return CategoryGraph(labels, nbrs, seen=seen, provenance=prov, report=report.to_dict())
