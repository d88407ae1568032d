"""`build_graph`: one entry point for the three graph sources (embedding, llm, file), with provenance.

It maps 1:1 onto `c2srt graph build --labels FILE [--seen FILE] --source ... --out graph.json`.
With seen labels given, the graph is built over them alone and then extended with the unseen
labels (`extend_graph`: edges into each from the seen ones), so no unseen name shapes the edges
training uses.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..choices import GraphSource
from ..vocabulary import check_unique
from .embedding import (
    DEFAULT_CANDIDATES,
    DEFAULT_MAX_NEIGHBORS,
    DEFAULT_MIN_SIM,
    DEFAULT_RELATIVE_CUT,
    adaptive_cut,
    cosine_similarity,
    nearest_candidates,
)
from .contexts import DEFAULT_MIN_PMI, DEFAULT_MUTUAL_K, PMI_SCALE, context_links, make_context_scorer, pmi_strength
from .encoders import encoder_name, resolve_encoder
from .graph import CategoryGraph, sum_reports
from .llm import OPENAI_CONCURRENCY
from .parse import ParseReport, VocabularyMatcher, clean_pairs

_logger = logging.getLogger(__name__)

# Cut defaults of the LLM source, on the model's strengths (see llm.py). Measured on the 80 COCO
# classes with the local PMI scorer: these keep 0-9 neighbours per class (mean 4.3).
LLM_LOCAL_RELATIVE_CUT = 0.8
LLM_LOCAL_MIN_STRENGTH = 0.5
# An endpoint model already chose its neighbours: no relative cut, only a floor.
LLM_OPENAI_RELATIVE_CUT = 0.0
LLM_OPENAI_MIN_STRENGTH = 0.1
DEFAULT_LLM_MODE = "contexts"  # local backend: "contexts" (contexts.py) or "pmi" (llm.py: judge embedding candidates)


def _check_vocabulary(labels: Sequence[str], seen: Sequence[str] | None) -> tuple[list[str], list[str] | None]:
    labels = list(labels)
    for i, name in enumerate(labels):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"label #{i} is empty or not a string: {name!r}")
    check_unique(labels)
    if seen is None:
        return labels, None
    seen = list(seen)
    known = set(labels)
    unknown = [n for n in seen if n not in known]
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


class VocabularyMemo:
    """An encoder that embeds the whole vocabulary once and serves any part of it from there."""

    def __init__(self, encoder: Callable[[list[str]], Any], vocabulary: Sequence[str]) -> None:
        self.encoder = encoder
        self.vocabulary = list(vocabulary)
        self.__name__ = getattr(encoder, "__name__", type(encoder).__name__)
        self.model_name = getattr(encoder, "model_name", None)
        self._rows: dict[str, int] | None = None
        self._emb: np.ndarray | None = None

    def __call__(self, names: list[str]) -> np.ndarray:
        if self._emb is None or self._rows is None:
            self._emb = np.asarray(self.encoder(self.vocabulary))
            self._rows = {n: i for i, n in enumerate(self.vocabulary)}
        if any(n not in self._rows for n in names):
            return np.asarray(self.encoder(list(names)))
        return self._emb[[self._rows[n] for n in names]]


_LINK_DEFAULTS: dict[str, Any] = {  # how a label's neighbours are chosen (see `build_graph`)
    "candidates": DEFAULT_CANDIDATES,
    "relative_cut": None,
    "min_strength": None,
    "max_neighbors": DEFAULT_MAX_NEIGHBORS,
    "llm_backend": "local",
    "llm_model": None,
    "llm_mode": DEFAULT_LLM_MODE,
    "base_url": None,
    "cache_dir": None,
    "scorer": None,
    "progress": False,
    "mutual_k": DEFAULT_MUTUAL_K,
    "min_pmi": DEFAULT_MIN_PMI,
    "llm_concurrency": OPENAI_CONCURRENCY,
}


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
    llm_mode: str = DEFAULT_LLM_MODE,
    base_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    scorer: Any = None,
    progress: bool = False,
    mutual_k: int = DEFAULT_MUTUAL_K,
    min_pmi: float = DEFAULT_MIN_PMI,
    link_unseen: bool = False,
    llm_concurrency: int = OPENAI_CONCURRENCY,
) -> CategoryGraph:
    """Build the category graph of a vocabulary.

    With `seen` given (and some labels unseen), in two steps that `provenance["steps"]` records:
    the graph over the seen labels alone (what training uses: its candidate prefilter, cut and
    neighbour cap never see an unseen name), then `extend_graph` adds each unseen label with
    edges into it from the seen labels (and, with `link_unseen`, from the other unseen labels
    too: the test vocabulary is known at inference; training uses the seen-only subgraph, which
    this never changes). Without `seen`, one graph over all labels.

    Args:
        labels: the vocabulary (seen and unseen labels), unique.
        seen: the labels seen in training (must be in `labels`).
        source: "embedding" (text-embedding neighbours, adaptive cut), "llm" (a language model:
            see `llm_mode`) or "file" (load `path` and check it).
        path: graph JSON for source "file".
        encoder: text encoder for similarities/candidates: None or "minilm" (all-MiniLM-L6-v2), or
            a callable names -> [K, D] (e.g. the CLIP text tower).
        candidates: nearest labels considered per category (embedding source, and the LLM
            modes that judge embedding candidates: "pmi" and the openai backend).
        relative_cut: keep strength >= relative_cut * best strength of the category. Default per
            source: 0.9 (embedding), 0.8 (llm local), 0 (llm openai).
        min_strength: absolute floor. Default per source: 0.3 cosine (embedding), 0.5 (llm local),
            0.1 (llm openai).
        max_neighbors: cap on neighbours per category.
        llm_backend: "local" (Gemma 3 270M, offline) or "openai" (OpenAI-compatible endpoint).
        llm_model: endpoint model id (openai) or a local transformers model folder (local).
        llm_mode: local backend mode: "contexts" (default: PMI of every label after photo
            contexts, both directions, mutual top-k; `contexts.py`) or "pmi" (version 1: PMI of
            the `candidates` nearest labels after "... a c and a").
        base_url: OpenAI-compatible base URL (API key from $OPENAI_API_KEY).
        cache_dir: cache root for the converted local model and endpoint answers
            (default $C2SRT_CACHE or ~/.cache/c2srt).
        scorer: a ready `llm.RelationScorer` (overrides `llm_backend`; tests, custom backends).
        progress: show a tqdm progress bar.
        mutual_k: contexts mode: n -> c needs n among c's `mutual_k` best and c among n's.
        min_pmi: contexts mode: floor on the pair's PMI, in nats.
        link_unseen: with `seen`: unseen labels may also receive edges from other unseen labels.
        llm_concurrency: openai backend: requests in flight at once.

    Returns:
        The graph (labels in `labels` order), with `provenance` (source, model, prompt hash, date,
        parameters, steps) and `report` (dropped answers by reason).

    Raises:
        ValueError: bad vocabulary, unknown source/backend, or (source "file") a graph whose
            labels do not cover the vocabulary.

    Example:
        >>> g = build_graph(["dog", "cat", "fork"], source="embedding")  # doctest: +SKIP
    """
    labels, seen = _check_vocabulary(labels, seen)
    src = _source(source)
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if src is GraphSource.FILE:
        return _from_file(labels, seen, path)
    enc = resolve_encoder(encoder)
    opts = dict(
        candidates=candidates, relative_cut=relative_cut, min_strength=min_strength, max_neighbors=max_neighbors,
        llm_backend=llm_backend, llm_model=llm_model, llm_mode=llm_mode, base_url=base_url, cache_dir=cache_dir,
        scorer=scorer, progress=progress, mutual_k=mutual_k, min_pmi=min_pmi, llm_concurrency=llm_concurrency,
    )  # fmt: skip
    opts["scorer"] = _scorer(src, opts)  # one scorer (one model load, one answer cache) for both steps
    seen_set = set(seen) if seen is not None else set(labels)
    unseen = [n for n in labels if n not in seen_set]
    if seen is None or not unseen:
        graph = _build_over(labels, seen, src, enc, **opts)
        graph.provenance["steps"] = [{"step": "all", "labels": len(labels), "edges": graph.num_edges}]
        return graph
    trained = [n for n in labels if n in seen_set]
    enc = VocabularyMemo(enc, trained)  # the seen labels embedded alone, once for both steps
    graph = _build_over(trained, trained, src, enc, **opts)
    graph.provenance["steps"] = [{"step": "seen", "labels": len(trained), "edges": graph.num_edges}]
    graph = extend_graph(graph, unseen, link_from=trained, link_new=link_unseen, source=src, encoder=enc, **opts)
    graph = graph.reordered(labels)
    graph.provenance["num_labels"] = len(labels)
    return graph


def _source(source: str | GraphSource) -> GraphSource:
    try:
        return GraphSource(source)
    except ValueError as err:
        raise ValueError(f"unknown graph source {source!r}; valid sources: {', '.join(s.value for s in GraphSource)}") from err


def _cut_defaults(src: GraphSource, relative_cut: float | None, min_strength: float | None, local: bool) -> tuple[float, float]:
    if src is GraphSource.EMBEDDING:
        return (DEFAULT_RELATIVE_CUT if relative_cut is None else relative_cut, DEFAULT_MIN_SIM if min_strength is None else min_strength)
    rc = relative_cut if relative_cut is not None else (LLM_LOCAL_RELATIVE_CUT if local else LLM_OPENAI_RELATIVE_CUT)
    ms = min_strength if min_strength is not None else (LLM_LOCAL_MIN_STRENGTH if local else LLM_OPENAI_MIN_STRENGTH)
    return rc, ms


def _is_contexts(scorer: Any) -> bool:
    """A scorer of whole PMI rows (`contexts.ContextScorer`) rather than of given candidates."""
    return callable(getattr(scorer, "rows", None))


def _scorer(src: GraphSource, opts: dict[str, Any]) -> Any:
    """The LLM scorer of `opts` (made from the backend settings when none is given); None for other sources."""
    if src is not GraphSource.LLM or opts["scorer"] is not None:
        return opts["scorer"]
    if opts["llm_backend"] == "local" and opts["llm_mode"] == "contexts":
        return make_context_scorer(model=opts["llm_model"], cache_dir=opts["cache_dir"])
    from .llm import make_scorer

    return make_scorer(
        opts["llm_backend"], model=opts["llm_model"], base_url=opts["base_url"], cache_dir=opts["cache_dir"],
        mode=opts["llm_mode"], concurrency=opts["llm_concurrency"],
    )  # fmt: skip


def _build_over(
    labels: list[str], seen: list[str] | None, src: GraphSource, enc: Callable[[list[str]], Any], **opts: Any
) -> CategoryGraph:
    """One graph over `labels`: each label's neighbours among the others."""
    if _is_contexts(opts["scorer"]):
        return _linked_by_contexts(labels, labels, seen, enc, **opts)
    sim = cosine_similarity(enc(labels))  # [K, K]
    return _linked(labels, labels, nearest_candidates(sim, opts["candidates"]), sim, seen, src, enc, **opts)


def extend_graph(
    graph: CategoryGraph,
    new_labels: Sequence[str],
    *,
    link_from: Sequence[str] | None = None,
    link_new: bool = False,
    source: str | GraphSource = GraphSource.EMBEDDING,
    encoder: str | Callable[[list[str]], Any] | None = None,
    **options: Any,
) -> CategoryGraph:
    """`graph` plus `new_labels`, each linked by edges into it from labels of `link_from`.

    The graph's own edges are kept exactly as they are; a new label's candidates are its nearest
    labels of `link_from` (default: the graph's labels), cut by the source's rule. So the edges a
    model trained on stay put, and an unseen label receives messages from seen ones. The step is
    appended to `provenance["steps"]`.

    Args:
        graph: the graph to extend (e.g. the seen-only training graph, a checkpoint's graph).
        new_labels: labels to add (labels already in the graph are skipped).
        link_from: labels the new ones may receive edges from (all in `graph`).
        link_new: the new labels may also receive edges from each other (e.g. unseen labels at
            inference, where the whole test vocabulary is known).
        source, encoder: as `build_graph` ("file" is not a way to extend).
        **options: `build_graph`'s candidates, relative_cut, min_strength, max_neighbors,
            llm_backend, llm_model, llm_mode, base_url, cache_dir, scorer, progress, mutual_k,
            min_pmi, llm_concurrency.

    Raises:
        ValueError: a `link_from` label outside the graph, source "file", or an unknown option.
    """
    unknown = sorted(set(options) - set(_LINK_DEFAULTS))
    if unknown:
        raise ValueError(f"extend_graph: unknown option(s) {', '.join(unknown)}; valid: {', '.join(_LINK_DEFAULTS)}")
    opts = {**_LINK_DEFAULTS, **options}
    src = _source(source)
    if src is GraphSource.FILE:
        raise ValueError("a graph is extended by the embedding or llm source, not 'file'")
    new = [n for n in dict.fromkeys(str(x) for x in new_labels) if n not in graph]
    base = list(graph.labels if link_from is None else link_from)
    outside = [n for n in base if n not in graph]
    if outside:
        raise ValueError(f"link_from label {outside[0]!r} is not in the graph ({len(outside)} outside)")
    if not new:
        return graph
    enc = resolve_encoder(encoder)
    opts["scorer"] = _scorer(src, opts)
    pool = base + new if link_new else base
    if _is_contexts(opts["scorer"]):
        links = _linked_by_contexts(new, pool, None, enc, **opts)
    else:
        sim = np.zeros((len(new), 0))
        if pool:
            unit = [np.asarray(e, dtype=np.float64) for e in (enc(new), enc(pool))]
            unit = [e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), np.finfo(np.float64).tiny) for e in unit]
            sim = unit[0] @ unit[1].T  # [U, D] x [D, S] -> [U, S]: new label -> label it may link from
        if link_new:
            sim[np.arange(len(new)), len(base) + np.arange(len(new))] = -np.inf  # never from itself
        order = np.argsort(-sim, axis=1, kind="stable")[:, : opts["candidates"]]  # ties keep label order
        cand = [[j for j in row if np.isfinite(sim[t, j])] for t, row in enumerate(order.tolist())]
        links = _linked(new, pool, cand, sim, None, src, enc, **opts)
    nbrs = {c: graph.neighbors(c) for c in graph.labels}
    nbrs.update({c: links.neighbors(c) for c in new})
    prov = dict(graph.provenance)
    step = {"step": "extend", "labels": len(new), "link_from": len(base), "link_new": bool(link_new), "edges": links.num_edges, "source": src.value}
    step.update({k: v for k, v in links.provenance.items() if k in ("encoder", "model", "mode", "llm_backend", "parameters")})
    prov["steps"] = list(prov.get("steps", [])) + [step]
    report = sum_reports(graph.report, links.report)
    return CategoryGraph(graph.labels + new, nbrs, seen=graph.seen, provenance=prov, report=report)


def _linked(
    targets: list[str],
    vocabulary: list[str],
    cand_idx: list[list[int]],
    sim: np.ndarray,
    seen: list[str] | None,
    src: GraphSource,
    enc: Callable[[list[str]], Any],
    *,
    candidates: int,
    relative_cut: float | None,
    min_strength: float | None,
    max_neighbors: int,
    llm_backend: str,
    llm_model: str | None,
    llm_mode: str,
    base_url: str | None,
    cache_dir: str | os.PathLike[str] | None,
    scorer: Any,
    progress: bool,
    mutual_k: int,
    min_pmi: float,
    llm_concurrency: int,
) -> CategoryGraph:
    """Edges into each target from its candidates, by the source's rule.

    `cand_idx[t]` are the candidates of target t as indices into `vocabulary`, best first, and
    `sim[t, j]` their similarity [T, V]. Returns a graph over `vocabulary` + the targets not in
    it, holding only the targets' in-edges.
    """
    nodes = list(dict.fromkeys(vocabulary + targets))  # vocabulary first: index j is vocabulary[j]
    in_vocabulary = set(vocabulary)
    prov: dict[str, Any] = {"source": src.value, "date": _now(), "encoder": encoder_name(enc), "candidates": candidates, "num_labels": len(nodes)}
    nbrs: dict[str, list[tuple[str, float]]] = {}
    if src is GraphSource.EMBEDDING:
        rc, ms = _cut_defaults(src, relative_cut, min_strength, local=False)
        for t, (cat, cand) in enumerate(zip(targets, cand_idx)):
            kept = adaptive_cut([(j, float(sim[t, j])) for j in cand], relative_cut=rc, min_score=ms, max_neighbors=max_neighbors)
            nbrs[cat] = [(nodes[j], s) for j, s in kept]
        prov.update(model=encoder_name(enc), parameters={"relative_cut": rc, "min_strength": ms, "max_neighbors": max_neighbors})
        return CategoryGraph(nodes, nbrs, seen=seen, provenance=prov)
    if scorer is None:
        from .llm import make_scorer

        scorer = make_scorer(llm_backend, model=llm_model, base_url=base_url, cache_dir=cache_dir, mode=llm_mode, concurrency=llm_concurrency)
    desc = scorer.describe()
    rc, ms = _cut_defaults(src, relative_cut, min_strength, local=desc.get("backend") == "local")
    matcher = VocabularyMatcher(nodes)
    index = {n: i for i, n in enumerate(nodes)}
    cands = [[vocabulary[j] for j in row] for row in cand_idx]
    report = ParseReport()
    bar = _progress(len(targets), progress, f"graph ({desc.get('backend')} LLM)")
    step = max(1, int(getattr(scorer, "batch_size", 1)))
    try:
        for start in range(0, len(targets), step):
            batch = list(zip(targets[start : start + step], cands[start : start + step]))
            for (cat, cand), answer in zip(batch, scorer.relate(batch)):
                for group in ("dropped", "repaired"):
                    for key, n in getattr(answer.report, group).items():
                        getattr(report, group)[key] += n
                for reason, ex in answer.report.examples.items():
                    report.examples.setdefault(reason, []).extend(ex[: max(0, 5 - len(report.examples.get(reason, [])))])
                pairs = [(n, w) for n, w in clean_pairs(cat, answer.pairs, matcher, report, candidates=cand) if n in in_vocabulary]
                kept = adaptive_cut([(index[n], w) for n, w in pairs], relative_cut=rc, min_score=ms, max_neighbors=max_neighbors)
                below = len(pairs) - len(kept)
                if below:
                    report.dropped["below_cut"] += below
                nbrs[cat] = [(nodes[j], w) for j, w in kept]
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
    return CategoryGraph(nodes, nbrs, seen=seen, provenance=prov, report=report.to_dict())


def _linked_by_contexts(
    targets: list[str], pool: list[str], seen: list[str] | None, enc: Callable[[list[str]], Any], *, scorer: Any, max_neighbors: int,
    mutual_k: int, min_pmi: float, progress: bool, **_: Any,
) -> CategoryGraph:
    """Edges into each target from `pool` by the contexts rule (`contexts.context_links`): the
    whole pool is scored, no embedding candidates. Returns a graph over `pool` + the targets not in
    it, holding only the targets' in-edges."""
    nodes = list(dict.fromkeys(pool + targets))
    desc = scorer.describe()
    bar = _progress(len(targets), progress, f"graph ({desc.get('backend')} LLM, contexts)")
    try:
        links, below = context_links(targets, pool, scorer.rows, mutual_k=mutual_k, min_pmi=min_pmi, max_neighbors=max_neighbors, bar=bar)
    finally:
        if bar is not None:
            bar.close()
    nbrs = {cat: [(n, pmi_strength(s)) for n, s in items] for cat, items in links.items()}
    report = ParseReport()
    report.dropped["below_cut"] += below
    prov: dict[str, Any] = {"source": GraphSource.LLM.value, "date": _now(), "encoder": None, "candidates": "every label", "num_labels": len(nodes)}
    prov.update({k: v for k, v in desc.items() if k != "backend"}, llm_backend=desc.get("backend"))
    prov["parameters"] = {"mutual_k": mutual_k, "min_pmi": min_pmi, "max_neighbors": max_neighbors, "strength": f"1 - exp(-PMI / {PMI_SCALE:g} nats)"}
    return CategoryGraph(nodes, nbrs, seen=seen, provenance=prov, report=report.to_dict())


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
