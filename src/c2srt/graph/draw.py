"""Draw a category graph (or one label's neighbourhood) as a PNG, to check a graph by eye.

Layout: a deterministic force-directed (Fruchterman-Reingold) layout in numpy, started from a
circle, so the same graph always gives the same picture and no networkx is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .graph import CategoryGraph

DRAW_MAX_NODES = 60  # nodes drawn at most (a neighbourhood is trimmed to the strongest)
LAYOUT_ITERATIONS = 200
SEEN_COLOR = "#4C72B0"
UNSEEN_COLOR = "#DD8452"
FOCUS_COLOR = "#C44E52"
NO_SPLIT_COLOR = "#8C8C8C"
EDGE_WIDTH_MAX = 3.0  # points, for strength 1
FIG_SIZE_IN = 10.0
FIG_DPI = 120


def spring_layout(num_nodes: int, edges: list[tuple[int, int, float]], *, iterations: int = LAYOUT_ITERATIONS) -> np.ndarray:
    """Fruchterman-Reingold positions [V, 2] in [-1, 1], deterministic (circular start, no randomness).

    Args:
        num_nodes: V.
        edges: (source, target, weight) with indices < V; weights scale the attraction.
        iterations: cooling steps.
    """
    if num_nodes == 0:
        return np.zeros((0, 2))
    angle = 2 * np.pi * np.arange(num_nodes) / num_nodes
    pos = np.stack([np.cos(angle), np.sin(angle)], axis=1)  # [V, 2]
    if num_nodes == 1:
        return pos * 0.0
    k = 1.0 / np.sqrt(num_nodes)  # ideal edge length
    adj = np.zeros((num_nodes, num_nodes))
    for s, t, w in edges:
        adj[s, t] = adj[t, s] = max(adj[s, t], w)
    temp = 0.1
    for _ in range(iterations):
        delta = pos[:, None, :] - pos[None, :, :]  # [V, 1, 2] - [1, V, 2] -> [V, V, 2]
        dist = np.maximum(np.linalg.norm(delta, axis=-1), 1e-3)  # [V, V]
        force = k * k / dist**2 - adj * dist / k  # repulsion minus weighted attraction, per unit vector
        np.fill_diagonal(force, 0.0)
        disp = np.einsum("ij,ijd->id", force, delta)  # [V, V] x [V, V, 2] -> [V, 2]
        length = np.maximum(np.linalg.norm(disp, axis=1, keepdims=True), 1e-9)
        pos = pos + disp / length * np.minimum(length, temp)
        temp *= 0.98
    pos = pos - pos.mean(axis=0, keepdims=True)
    return pos / max(np.abs(pos).max(), 1e-9)


def _neighbourhood(graph: CategoryGraph, label: str, max_nodes: int) -> list[str]:
    """The label, its neighbours, then their neighbours (strongest first), at most `max_nodes`."""
    nodes = [label]
    first = [n for n, _ in graph.neighbors(label)]
    # Also the categories that receive messages from `label`.
    receivers = [c for c in graph.labels if any(n == label for n, _ in graph.neighbors(c))]
    for n in first + receivers:
        if n not in nodes:
            nodes.append(n)
    for n in first:
        for m, _ in graph.neighbors(n):
            if m not in nodes:
                nodes.append(m)
    return nodes[:max_nodes]


def draw_graph(
    graph: CategoryGraph,
    out_png: str | os.PathLike[str],
    label: str | None = None,
    max_nodes: int = DRAW_MAX_NODES,
) -> Path:
    """Draw `label`'s neighbourhood (or the whole graph when it is small) to a PNG.

    Edge width grows with strength; arrows point neighbour -> category (the message direction);
    seen and unseen labels have different colours (grey when the graph has no seen set).

    Args:
        graph: the graph.
        out_png: output file (written atomically).
        label: centre of the drawing; None draws the whole graph (its first `max_nodes` labels).
        max_nodes: cap on drawn nodes.

    Returns:
        The path written.

    Raises:
        ValueError: if `label` is not in the graph.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if label is not None and label not in graph:
        raise ValueError(f"label {label!r} is not in the graph ({len(graph)} labels)")
    nodes = _neighbourhood(graph, label, max_nodes) if label is not None else graph.labels[:max_nodes]
    idx = {n: i for i, n in enumerate(nodes)}
    edges = [(idx[n], idx[c], w) for c in nodes for n, w in graph.neighbors(c) if n in idx]
    pos = spring_layout(len(nodes), edges)
    seen = set(graph.seen) if graph.seen is not None else None

    fig, ax = plt.subplots(figsize=(FIG_SIZE_IN, FIG_SIZE_IN), dpi=FIG_DPI)
    for s, t, w in edges:
        ax.annotate(
            "",
            xy=pos[t],
            xytext=pos[s],
            arrowprops=dict(arrowstyle="-|>", lw=0.3 + EDGE_WIDTH_MAX * w, color="0.45", alpha=0.35 + 0.5 * w, shrinkA=12, shrinkB=12),
        )
    for n, i in idx.items():
        color = NO_SPLIT_COLOR if seen is None else (SEEN_COLOR if n in seen else UNSEEN_COLOR)
        is_focus = n == label
        ax.scatter(*pos[i], s=420 if is_focus else 160, color=color, edgecolors=FOCUS_COLOR if is_focus else "white", linewidths=2.5 if is_focus else 1.0, zorder=3)
        ax.annotate(n, pos[i], xytext=(0, 11), textcoords="offset points", ha="center", fontsize=11 if is_focus else 9, weight="bold" if is_focus else "normal", zorder=4)
    handles = [Patch(color=SEEN_COLOR, label="seen"), Patch(color=UNSEEN_COLOR, label="unseen")] if seen is not None else []
    if handles:
        ax.legend(handles=handles, loc="lower right", frameon=False)
    src = graph.provenance.get("source", "?")
    title = f"neighbourhood of {label!r}" if label is not None else f"{len(nodes)} of {len(graph)} labels"
    ax.set_title(f"{title} — source: {src}, {len(edges)} edges (arrow: neighbour → category, width: strength)", fontsize=10)
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-1.2, 1.2)
    ax.set_axis_off()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out
