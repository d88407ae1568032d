"""Control graphs: what a claim about graph transfer is measured against.

A gain from IST need not come from its edges: the module also changes the scoring rule and learns
a node transform. Two controls split it (docs/MINIWORLD.md): the same labels with no edge
(`edgeless`: every node hears only itself), and edges as many and as strong as a given graph's but
drawn at random (`random_like`: what the graph's *choice* of neighbours adds beyond its shape).
"""

from __future__ import annotations

import numpy as np

from .graph import CategoryGraph


def edgeless(graph: CategoryGraph) -> CategoryGraph:
    """The graph's labels and split with no edge."""
    provenance = {**graph.provenance, "control": "every edge removed"}
    return CategoryGraph(graph.labels, {}, seen=graph.seen, provenance=provenance)


def random_like(graph: CategoryGraph, *, seed: int) -> CategoryGraph:
    """Random edges with the graph's degrees: every category keeps its number of in-edges and their
    strengths, each source replaced by a label drawn uniformly from the same pool (a seen source by
    a seen label, an unseen one by an unseen label; never the category itself, never twice).

    So training's seen-only subgraph keeps its size, an unseen label still hears from seen labels
    only where the graph made it so, and only *which* labels are linked changes.
    """
    rng = np.random.default_rng(seed)
    seen = set(graph.seen if graph.seen is not None else graph.labels)
    pools = {True: [n for n in graph.labels if n in seen], False: [n for n in graph.labels if n not in seen]}
    neighbors: dict[str, list[tuple[str, float]]] = {}
    for cat in graph.labels:
        chosen: list[tuple[str, float]] = []
        taken = {cat}
        for name, weight in graph.neighbors(cat):
            pool = [n for n in pools[name in seen] if n not in taken]
            if not pool:  # every label of that pool already links to `cat`
                continue
            pick = pool[int(rng.integers(len(pool)))]
            taken.add(pick)
            chosen.append((pick, weight))
        if chosen:
            neighbors[cat] = chosen
    provenance = {**graph.provenance, "control": f"random edges with the same degrees and strengths (seed {seed})"}
    return CategoryGraph(graph.labels, neighbors, seen=graph.seen, provenance=provenance)
