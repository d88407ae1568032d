"""How good is a category graph? Its edges scored against a known co-occurrence.

A graph built from names alone (an LLM, text embeddings) is meant to link labels that appear
together. Given the label counts of annotated images (`cooccurrence.Cooccurrence`), an edge
n -> c is *true* when lift(n, c) >= `min_lift` and P(n | c) >= `min_p_given` (the rule of
`cooccurrence.true_edges`, by default the mini-world oracle's: lift >= 2, P >= 0.3). The figures:

- **precision**: the share of the graph's edges that are true;
- **target precision**: the same over the edges *into* the target labels. Targets are the
  unseen labels when the graph has a seen/unseen split, else every label;
- **strongest partner**: over the targets that have a true partner among the *source* labels
  (the seen labels under a split, else all other labels), the share whose strongest partner is one
  of their neighbours. A target u's strongest partner is its true partner s with the highest
  P(s | u) (ties: the higher lift, then the earlier label);
- **correlated covered**: over the *correlated* targets, those with a source label s of
  lift(s, u) >= `correlated_lift` and P(s | u) >= `correlated_p_given` (the mini-world's rule for
  its correlated unseen labels, docs/MINIWORLD.md), the share with at least one true source
  partner among their neighbours; `correlated_covered_any` also counts a true partner outside the
  source pool (an edge between two unseen labels at inference); `correlated_strict` counts only a
  neighbour that passes the correlated rule itself (the count issue 20 gave: 3 of 8 for the
  version-1 mini-world graph);
- neighbours per label: min / mean / max over all labels (in-edges).

`random_baseline` scores `controls.random_like` draws of the same graph (same in-degrees, seen
sources replaced by seen labels): what the same number of edges gives by chance.

Example:
    >>> q = graph_quality(graph, reference)  # doctest: +SKIP
    >>> q.precision, q.correlated_covered, q.correlated_total  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .controls import random_like
from .cooccurrence import TRUE_LIFT, TRUE_P_GIVEN, Cooccurrence
from .graph import CategoryGraph

CORRELATED_LIFT = 2.0  # a target is correlated when some source label s has lift(s, u) >= this ...
CORRELATED_P_GIVEN = 0.5  # ... and P(s | u) >= this (docs/MINIWORLD.md; miniworld.report's rule)
RANDOM_DRAWS = 100  # random graphs per baseline
RANDOM_INTERVAL = (2.5, 97.5)  # percentiles of the draws reported as the random interval
REFERENCE_FORMAT = "c2srt-cooccurrence"  # the open JSON format of a reference (see `save_reference`)

# the figures `random_baseline` summarises (fractions; NaN when undefined)
SHARES = ("precision", "target_precision", "strongest_share", "correlated_share", "correlated_share_any", "correlated_share_strict")


@dataclass
class LabelQuality:
    """One target label: its neighbours against its true partners."""

    label: str
    neighbors: list[str]
    true_neighbors: list[str]
    partners: list[str]  # true partners among the source labels, strongest first
    strongest: str | None  # the first of `partners`
    correlated: bool


@dataclass
class GraphQuality:
    """A graph's figures against a reference (see the module docstring for each definition)."""

    labels: int
    edges: int
    true_edges: int
    precision: float
    targets: str  # "unseen" (graph with a split) or "all"
    target_edges: int
    target_precision: float
    strongest_hit: int
    strongest_total: int
    correlated_covered: int
    correlated_covered_any: int
    correlated_strict: int
    correlated_total: int
    degree_min: int
    degree_mean: float
    degree_max: int
    reference_true_edges: int
    per_label: list[LabelQuality] = field(default_factory=list)

    @property
    def strongest_share(self) -> float:
        return _share(self.strongest_hit, self.strongest_total)

    @property
    def correlated_share(self) -> float:
        return _share(self.correlated_covered, self.correlated_total)

    @property
    def correlated_share_any(self) -> float:
        return _share(self.correlated_covered_any, self.correlated_total)

    @property
    def correlated_share_strict(self) -> float:
        return _share(self.correlated_strict, self.correlated_total)

    def summary(self) -> dict[str, Any]:
        """The figures as one flat dict (no per-label detail)."""
        out = {k: v for k, v in asdict(self).items() if k != "per_label"}
        out.update(
            strongest_share=self.strongest_share,
            correlated_share=self.correlated_share,
            correlated_share_any=self.correlated_share_any,
            correlated_share_strict=self.correlated_share_strict,
        )
        return out


def _share(hit: int, total: int) -> float:
    return hit / total if total else math.nan


def graph_quality(
    graph: CategoryGraph,
    reference: Cooccurrence,
    *,
    seen: Sequence[str] | None = None,
    min_lift: float = TRUE_LIFT,
    min_p_given: float = TRUE_P_GIVEN,
    correlated_lift: float = CORRELATED_LIFT,
    correlated_p_given: float = CORRELATED_P_GIVEN,
) -> GraphQuality:
    """Score `graph`'s edges against `reference` (definitions in the module docstring).

    Args:
        graph: the graph; every label must have counts in `reference`.
        reference: the label counts (labels it has beyond the graph's are ignored).
        seen: the seen labels (default: the graph's own split, `graph.seen`; none: no split, every
            label is a target and a source).
        min_lift, min_p_given: the rule of a true edge.
        correlated_lift, correlated_p_given: the rule of a correlated target.

    Returns:
        The figures, with one `LabelQuality` per target label.

    Raises:
        ValueError: a graph label without counts in the reference (named), or a seen label that is
            not in the graph.
    """
    labels = list(graph.labels)
    missing = [n for n in labels if n not in set(reference.labels)]
    if missing:
        raise ValueError(f"graph label {missing[0]!r} has no counts in the reference ({len(missing)} of {len(labels)} missing)")
    stats = reference.subset(labels)
    index = {n: i for i, n in enumerate(labels)}
    seen = list(graph.seen) if seen is None and graph.seen is not None else (list(seen) if seen is not None else None)
    if seen is not None:
        outside = [n for n in seen if n not in index]
        if outside:
            raise ValueError(f"seen label {outside[0]!r} is not in the graph")
    seen_set = set(seen) if seen is not None else set(labels)
    split = seen is not None and len(seen_set) < len(labels)
    targets = [n for n in labels if n not in seen_set] if split else labels
    sources = [n for n in labels if n in seen_set]
    true = stats.true_edges(min_lift=min_lift, min_p_given=min_p_given)  # [n, c]
    p = stats.p_given()  # [n, c] = P(n | c)
    lift = stats.lift()
    correlated_ok = (lift >= correlated_lift) & (p >= correlated_p_given)  # [n, c]

    edges = graph.edges()
    n_true = sum(bool(true[index[n], index[c]]) for n, c, _ in edges)
    target_set = set(targets)
    into = [(n, c) for n, c, _ in edges if c in target_set]
    n_true_into = sum(bool(true[index[n], index[c]]) for n, c in into)

    per_label = []
    strongest_hit = strongest_total = covered = covered_any = strict = correlated_total = 0
    for u in targets:
        c = index[u]
        nbrs = [n for n, _ in graph.neighbors(u)]
        partners = [s for s in sources if s != u and true[index[s], c]]
        partners.sort(key=lambda s: (-p[index[s], c], -lift[index[s], c], index[s]))
        strongest = partners[0] if partners else None
        correlated = any(s != u and correlated_ok[index[s], c] for s in sources)
        true_nbrs = [n for n in nbrs if true[index[n], c]]
        if strongest is not None:
            strongest_total += 1
            strongest_hit += strongest in nbrs
        if correlated:
            correlated_total += 1
            covered += any(n in seen_set for n in true_nbrs)
            covered_any += bool(true_nbrs)
            strict += any(n in seen_set and correlated_ok[index[n], c] for n in nbrs)
        per_label.append(LabelQuality(u, nbrs, true_nbrs, partners, strongest, correlated))
    degrees = [len(graph.neighbors(n)) for n in labels]
    return GraphQuality(
        labels=len(labels),
        edges=len(edges),
        true_edges=n_true,
        precision=_share(n_true, len(edges)),
        targets="unseen" if split else "all",
        target_edges=len(into),
        target_precision=_share(n_true_into, len(into)),
        strongest_hit=strongest_hit,
        strongest_total=strongest_total,
        correlated_covered=covered,
        correlated_covered_any=covered_any,
        correlated_strict=strict,
        correlated_total=correlated_total,
        degree_min=min(degrees) if degrees else 0,
        degree_mean=float(np.mean(degrees)) if degrees else 0.0,
        degree_max=max(degrees) if degrees else 0,
        reference_true_edges=int(true.sum()),
        per_label=per_label,
    )


def random_baseline(
    graph: CategoryGraph, reference: Cooccurrence, *, draws: int = RANDOM_DRAWS, seed: int = 0, **rules: Any
) -> dict[str, dict[str, float]]:
    """The figures of `draws` random graphs with `graph`'s degrees (`controls.random_like`, seeds
    `seed`, `seed + 1`, ...): per share in `SHARES`, its mean and the 2.5 / 97.5 percentiles of
    the draws (NaN draws left out).

    Args:
        rules: `graph_quality`'s keyword arguments (seen, min_lift, ...).

    Returns:
        {share: {"mean", "lo", "hi"}}.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    values: dict[str, list[float]] = {k: [] for k in SHARES}
    for i in range(draws):
        q = graph_quality(random_like(graph, seed=seed + i), reference, **rules)
        for k in SHARES:
            values[k].append(float(getattr(q, k)))
    out = {}
    for k, v in values.items():
        arr = np.asarray([x for x in v if not math.isnan(x)])
        if arr.size == 0:
            out[k] = {"mean": math.nan, "lo": math.nan, "hi": math.nan}
        else:
            lo, hi = np.percentile(arr, RANDOM_INTERVAL)
            out[k] = {"mean": float(arr.mean()), "lo": float(lo), "hi": float(hi)}
    return out


# ------------------------------------------------------------------------------------- references
def reference_from_pairs(labels: Sequence[str], counts: Any, pair_counts: Any, images: int) -> Cooccurrence:
    """A reference from per-label image counts [K] and pair counts [K, K] (whose diagonal is
    ignored and replaced by `counts`), e.g. ML-GCN's `adj` / `nums`.

    Raises:
        ValueError: shapes that do not match the labels, an asymmetric or negative pair matrix, or
            a pair count above a label's own count.
    """
    k = len(labels)
    counts = np.asarray(counts, dtype=np.float64)
    joint = np.array(pair_counts, dtype=np.float64)
    if counts.shape != (k,) or joint.shape != (k, k):
        raise ValueError(f"{k} labels need counts [{k}] and pair counts [{k}, {k}], got {counts.shape} and {joint.shape}")
    np.fill_diagonal(joint, counts)
    if (joint < 0).any() or not np.array_equal(joint, joint.T):
        raise ValueError("pair counts must be non-negative and symmetric")
    over = np.argwhere(joint > np.minimum(counts[:, None], counts[None, :]))
    if over.size:
        i, j = over[0]
        raise ValueError(f"labels {labels[i]!r} and {labels[j]!r} are together in {joint[i, j]:g} images, more than one of them alone")
    if images < int(counts.max(initial=0)):
        raise ValueError(f"{images} images, but label {labels[int(counts.argmax())]!r} is in {counts.max():g}")
    return Cooccurrence(list(labels), counts, joint, int(images))


def save_reference(stats: Cooccurrence, path: str | os.PathLike[str], *, note: str = "") -> Path:
    """Write a reference as JSON: {"format", "labels", "counts", "joint", "images", "note"}."""
    from ..io import atomic_write_text

    data = {
        "format": REFERENCE_FORMAT,
        "labels": list(stats.labels),
        "counts": [int(x) for x in stats.counts],
        "joint": [[int(x) for x in row] for row in stats.joint],
        "images": int(stats.images),
        "note": note,
    }
    path = Path(path)
    atomic_write_text(path, json.dumps(data) + "\n")
    return path


def load_reference(path: str | os.PathLike[str], *, labels: Sequence[str] | None = None, images: int | None = None) -> Cooccurrence:
    """Read a reference co-occurrence.

    Formats (by suffix):
        - `.json`: {"labels": [K names], "counts": [K], "joint": [K][K] (images with both; the
          diagonal is ignored), "images": N} (`save_reference`'s format; "format" and "note"
          optional);
        - `.pkl`: ML-GCN's `voc_adj.pkl` / `coco_adj.pkl` ({"adj": [K, K] pair counts, "nums": [K]}),
          read with the restricted unpickler; it holds no names and no image count, so `labels`
          (in the file's order) and `images` are required.

    Raises:
        ValueError: an unknown suffix, a malformed file, or missing `labels` / `images` for a
            pickle; the message names the file.
    """
    path = Path(path)
    try:
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"not valid JSON (line {err.lineno}: {err.msg})") from err
            if not isinstance(data, dict) or not {"labels", "counts", "joint", "images"} <= set(data):
                raise ValueError('expected an object with "labels", "counts", "joint" and "images"')
            if data.get("format", REFERENCE_FORMAT) != REFERENCE_FORMAT:
                raise ValueError(f"'format' is {data['format']!r}, expected {REFERENCE_FORMAT!r}")
            names = data["labels"]
            if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
                raise ValueError('"labels" must be a list of non-empty strings')
            return reference_from_pairs(names, data["counts"], data["joint"], int(data["images"]))
        if path.suffix == ".pkl":
            from ..safe_pickle import safe_load_pickle

            data = safe_load_pickle(path)
            if not isinstance(data, dict) or not {"adj", "nums"} <= set(data):
                raise ValueError("expected ML-GCN's dict with 'adj' (pair counts) and 'nums' (label counts)")
            if labels is None or images is None:
                raise ValueError("an ML-GCN pickle holds no label names or image count: give them (--labels, --images)")
            if len(labels) != len(np.asarray(data["nums"])):
                raise ValueError(f"{len(labels)} label names for {len(np.asarray(data['nums']))} labels in the file")
            return reference_from_pairs(list(labels), data["nums"], data["adj"], int(images))
    except (ValueError, TypeError) as err:
        if str(err).startswith(str(path)):  # the unpickler names the file itself
            raise
        raise ValueError(f"{path}: {err}") from err
    raise ValueError(f"{path}: unknown reference format {path.suffix!r} (valid: .json, .pkl)")
