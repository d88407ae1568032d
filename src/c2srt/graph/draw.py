"""Draw a category graph (or one label's neighbourhood) as a PNG in which every label can be read.

A whole graph is cut into panels of at most `MAX_PANEL_NODES` labels: one per connected component,
larger components split into clusters (networkx Louvain communities, then Kernighan-Lin bisection
when Louvain cannot split), small components packed together, and the labels without any edge
listed in a last panel. One label's neighbourhood is drawn as rings around it (the label; its
neighbours and the labels it informs; their neighbours). Layouts come from networkx
(Kamada-Kawai, shells), seeded, so a graph always gives the same picture. Each label is drawn as
its own text box, and boxes are then pushed apart in screen space until none overlap (checked by
`label_overlaps`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import save_figure
from .graph import CategoryGraph

MAX_PANEL_NODES = 12  # labels per panel of a whole-graph picture
MAX_PANELS = 16  # panels of a whole-graph picture (the largest clusters; the rest are counted)
EGO_MAX_NODES = 24  # labels in a neighbourhood picture (the label, its ring, then the second ring)
PANEL_SIZE_IN = 4.6  # inches per panel side
EGO_SIZE_IN = 9.0  # inches per side of a neighbourhood picture
FIG_DPI = 110
FONT_SIZE = 8.5  # points
PANEL_CHARS = 64  # characters of FONT_SIZE text across a panel
PANEL_ROWS = 24  # text lines of FONT_SIZE down a panel
LABEL_PAD_PX = 3.0  # pixels kept free between two label boxes
SPREAD_ITERATIONS = 300  # overlap-removal sweeps at most
SEED = 0  # Louvain / bisection seed: the same graph always gives the same panels
SEEN_COLOR = "#4C72B0"
UNSEEN_COLOR = "#DD8452"
FOCUS_COLOR = "#C44E52"
NO_SPLIT_COLOR = "#8C8C8C"
EDGE_COLOR = "0.35"
EDGE_WIDTH_MAX = 2.5  # points, for strength 1


def _nx_graph(graph: CategoryGraph, nodes: Sequence[str]) -> Any:
    """Undirected networkx graph of `nodes` (edge weight: the stronger direction)."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(nodes)
    keep = set(nodes)
    for cat in nodes:
        for nb, w in graph.neighbors(cat):
            if nb in keep:
                g.add_edge(cat, nb, weight=max(w, g.get_edge_data(cat, nb, {}).get("weight", 0.0)))
    return g


def _split(g: Any, limit: int) -> list[list[str]]:
    """Node groups of at most `limit` from a connected graph: Louvain communities, recursively."""
    import networkx as nx

    if g.number_of_nodes() <= limit:
        return [list(g.nodes)]
    parts = nx.community.louvain_communities(g, weight="weight", seed=SEED)
    if len(parts) < 2:
        parts = nx.community.kernighan_lin_bisection(g, weight="weight", seed=SEED)
    order = {n: i for i, n in enumerate(g.nodes)}
    out = []
    for part in sorted((sorted(p, key=order.__getitem__) for p in parts), key=lambda p: order[p[0]]):
        sub = g.subgraph(part)
        for comp in sorted(nx.connected_components(sub), key=lambda c: min(order[n] for n in c)):
            out.extend(_split(sub.subgraph(sorted(comp, key=order.__getitem__)).copy(), limit))
    return out


def graph_panels(graph: CategoryGraph, *, limit: int = MAX_PANEL_NODES) -> tuple[list[list[str]], list[str]]:
    """Panels of a whole-graph picture and the labels without edges.

    Returns:
        (panels, isolated): each panel a list of at most `limit` labels (clusters of one component,
        or several small components packed together), largest first; the labels with no edge.
    """
    import networkx as nx

    g = _nx_graph(graph, graph.labels)
    order = {n: i for i, n in enumerate(graph.labels)}
    comps = sorted((sorted(c, key=order.__getitem__) for c in nx.connected_components(g)), key=lambda c: (-len(c), order[c[0]]))
    isolated = [c[0] for c in comps if len(c) == 1]
    clusters: list[list[str]] = []
    for comp in comps:
        if len(comp) > 1:
            clusters.extend(_split(g.subgraph(comp).copy(), limit))
    clusters.sort(key=lambda c: (-len(c), order[c[0]]))
    panels: list[list[str]] = []
    for cluster in clusters:  # first fit: small clusters share a panel
        target = next((p for p in panels if len(p) + len(cluster) <= limit), None)
        if target is None:
            panels.append(list(cluster))
        else:
            target.extend(cluster)
    return panels, isolated


def _shelves(radius: list[float], row_width: float) -> tuple[list[tuple[float, float]], float, float]:
    """Centres of discs of `radius` packed in rows of at most `row_width`, and the block's width and height."""
    centres, x, y, row_height, width = [], 0.0, 0.0, 0.0, 0.0
    for r in radius:
        if x > 0 and x + 2 * r > row_width + 1e-9:
            x, y, row_height = 0.0, y - row_height, 0.0
        centres.append((x + r, y - r))
        x += 2 * r
        width, row_height = max(width, x), max(row_height, 2 * r)
    return centres, width, row_height - y


def _layout(g: Any) -> dict[str, np.ndarray]:
    """Kamada-Kawai per connected component, components packed in rows (area ~ size), in [-1, 1]^2."""
    import networkx as nx

    order = {n: i for i, n in enumerate(g.nodes)}
    comps = sorted((sorted(c, key=order.__getitem__) for c in nx.connected_components(g)), key=lambda c: (-len(c), order[c[0]]))
    radius = [math.sqrt(len(c)) for c in comps]
    widths = np.cumsum([2 * r for r in radius])  # each possible row width
    centres, _, _ = min((_shelves(radius, w) for w in widths), key=lambda p: max(p[1], p[2]))  # the squarest block
    pos: dict[str, np.ndarray] = {}
    for comp, r, c in zip(comps, radius, centres):
        sub = g.subgraph(comp)
        # Unit weights: the layout spaces labels evenly; strength is shown by the edge width.
        # A seeded spring start: Kamada-Kawai from a circle converges slowly on paths.
        local = nx.kamada_kawai_layout(sub, weight=None, pos=nx.spring_layout(sub, seed=SEED)) if len(comp) > 2 else nx.circular_layout(sub)
        arr = np.array([local[n] for n in comp], dtype=float).reshape(len(comp), 2)  # [n, 2]
        arr -= arr.mean(axis=0)
        arr = arr / (np.abs(arr).max() or 1.0) * r * 0.8
        for n, p in zip(comp, arr + np.asarray(c)):
            pos[n] = p
    arr = np.array(list(pos.values()))
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    mid, half = (lo + hi) / 2, max(float(((hi - lo) / 2).max()), 1e-9)
    return {n: (p - mid) / half for n, p in pos.items()}


def _ego(graph: CategoryGraph, label: str, limit: int) -> tuple[list[list[str]], int]:
    """Shells around `label` ([label], its neighbours and receivers, their neighbours; at most
    `limit` labels) and how many of the first ring did not fit."""
    first = [n for n, _ in graph.neighbors(label)]
    first += [c for c in graph.labels if c not in first and c != label and any(n == label for n, _ in graph.neighbors(c))]
    cut = max(0, len(first) - (limit - 1))
    first = first[: limit - 1]
    taken = {label, *first}
    second: list[str] = []
    for n in first:
        for m, _ in graph.neighbors(n):
            if m not in taken and len(taken) < limit:
                second.append(m)
                taken.add(m)
    return [s for s in ([label], first, second) if s], cut


def _box_color(name: str, seen: set[str] | None) -> str:
    return NO_SPLIT_COLOR if seen is None else (SEEN_COLOR if name in seen else UNSEEN_COLOR)


def _spread(ax: Any, texts: list[Any]) -> None:
    """Move label boxes apart (in pixels, inside the axes) until no two overlap."""
    if len(texts) < 2:
        return
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    boxes = [t.get_bbox_patch().get_window_extent(renderer) if t.get_bbox_patch() else t.get_window_extent(renderer) for t in texts]
    size = np.array([[b.width, b.height] for b in boxes]) + LABEL_PAD_PX  # [V, 2]
    centre = np.array([[(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2] for b in boxes])  # [V, 2]
    lo = np.array([frame.x0, frame.y0]) + size / 2
    hi = np.array([frame.x1, frame.y1]) - size / 2
    for sweep in range(SPREAD_ITERATIONS):
        moved = False
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                d = centre[j] - centre[i]
                overlap = (size[i] + size[j]) / 2 - np.abs(d)  # [2]
                if (overlap <= 0).any():
                    continue
                axis = int(overlap[1] * 2.5 > overlap[0])  # the cheaper way out (boxes are wide: prefer x)
                sign = np.sign(d[axis]) or (1.0 if (i + j + sweep) % 2 else -1.0)
                step = np.zeros(2)
                step[axis] = sign * (overlap[axis] / 2 + 0.5)
                centre[i] -= step
                centre[j] += step
                moved = True
        centre = np.clip(centre, lo, np.maximum(lo, hi))
        if not moved:
            break
    for t, c, b in zip(texts, centre, boxes):
        shift = c - np.array([(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2])
        anchor = ax.transData.transform(t.get_position()) + shift
        t.set_position(ax.transData.inverted().transform(anchor))


def label_overlaps(fig: Any) -> list[tuple[str, str]]:
    """Pairs of label boxes (drawn text of each axes) that overlap on the rendered figure."""
    fig.canvas.draw()  # text boxes are laid out at draw time
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        items = [(t.get_text(), (t.get_bbox_patch() or t).get_window_extent(renderer)) for t in ax.texts if t.get_gid() == "label"]
        for i, (a, ba) in enumerate(items):
            for b, bb in items[i + 1 :]:
                if ba.x0 < bb.x1 and bb.x0 < ba.x1 and ba.y0 < bb.y1 and bb.y0 < ba.y1:
                    out.append((a, b))
    return out


def _draw_panel(
    ax: Any, graph: CategoryGraph, pos: dict[str, np.ndarray], *, focus: str | None, seen: set[str] | None, core: set[str] | None = None
) -> int:
    """Label boxes at `pos` and arrows neighbour -> category between them (`_spread` separates the boxes later).

    Returns the number of edges drawn (a mutual pair counts twice)."""
    reach = max((float(np.abs(p).max()) for p in pos.values()), default=1.0) or 1.0
    ax.set_xlim(-1.25 * reach, 1.25 * reach)
    ax.set_ylim(-1.15 * reach, 1.15 * reach)
    ax.set_axis_off()
    texts = {}
    for name, p in pos.items():
        is_focus = name == focus
        texts[name] = ax.text(
            *p, name, ha="center", va="center", fontsize=FONT_SIZE + (2 if is_focus else 0), weight="bold" if is_focus else "normal",
            color="white", gid="label", zorder=3,
            bbox=dict(boxstyle="round,pad=0.3", fc=_box_color(name, seen), ec=FOCUS_COLOR if is_focus else "white", lw=2 if is_focus else 0.5),
        )  # fmt: skip
    strength = {  # (source, target) -> w; with a `core`, only the edges touching it
        (nb, cat): w for cat in pos for nb, w in graph.neighbors(cat) if nb in texts and (core is None or cat in core or nb in core)
    }
    for (src, dst), w in strength.items():
        back = strength.get((dst, src))
        if back is not None and src > dst:
            continue  # a mutual pair is drawn once, with two heads
        ax.annotate(  # anchored to the two boxes, so the arrow follows them when they move
            "", xy=(0.5, 0.5), xycoords=texts[dst], xytext=(0.5, 0.5), textcoords=texts[src], zorder=1,
            arrowprops=dict(
                arrowstyle="<|-|>" if back is not None else "-|>", lw=0.4 + EDGE_WIDTH_MAX * max(w, back or 0.0),
                color=EDGE_COLOR, alpha=0.35 + 0.5 * max(w, back or 0.0), patchA=texts[src].get_bbox_patch(),
                patchB=texts[dst].get_bbox_patch(), shrinkA=1, shrinkB=1, mutation_scale=9,
            ),
        )  # fmt: skip
    edges = len(strength)
    return edges


def _draw_isolated(ax: Any, names: list[str], seen: set[str] | None) -> None:
    """Labels without edges, as a list in columns (as many as fit; the rest counted)."""
    ax.set_axis_off()
    longest = max(len(n) for n in names)
    cols = int(np.clip(PANEL_CHARS // (longest + 3), 1, 4))
    shown = names[: cols * PANEL_ROWS]
    rows = max(1, math.ceil(len(shown) / cols))
    for k, name in enumerate(shown):
        col, row = divmod(k, rows)
        ax.text(0.02 + col / cols, 0.97 - row / PANEL_ROWS, name, transform=ax.transAxes, ha="left", va="top",
                fontsize=FONT_SIZE, color=_box_color(name, seen), gid="label")  # fmt: skip
    if len(names) > len(shown):
        ax.text(0.02, 0.0, f"... and {len(names) - len(shown)} more", transform=ax.transAxes, fontsize=FONT_SIZE, style="italic")


def graph_figure(graph: CategoryGraph, label: str | None = None) -> Any:
    """The picture as a matplotlib Figure (not yet saved); see `draw_graph`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if label is not None and label not in graph:
        raise ValueError(f"label {label!r} is not in the graph ({len(graph)} labels)")
    seen = set(graph.seen) if graph.seen is not None else None
    src = graph.provenance.get("source", "?")
    if label is not None:
        import networkx as nx

        shells, hidden = _ego(graph, label, EGO_MAX_NODES)
        nodes = [n for s in shells for n in s]
        pos = nx.shell_layout(_nx_graph(graph, nodes), nlist=shells, scale=1.0)
        fig = Figure(figsize=(EGO_SIZE_IN, EGO_SIZE_IN), dpi=FIG_DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        core = {n for s in shells[:2] for n in s}  # edges between two labels of the outer ring are left out
        edges = _draw_panel(ax, graph, {n: np.asarray(pos[n]) for n in nodes}, focus=label, seen=seen, core=core)
        title = f"neighbourhood of {label!r}: {len(nodes)} labels, {edges} edges" + (f" ({hidden} neighbours not shown)" if hidden > 0 else "")
    else:
        panels, isolated = graph_panels(graph)
        shown, rest = panels[:MAX_PANELS], panels[MAX_PANELS:]
        cells = len(shown) + (1 if isolated else 0)
        cols = min(4, max(1, math.ceil(math.sqrt(cells))))
        rows = max(1, math.ceil(cells / cols))
        fig = Figure(figsize=(PANEL_SIZE_IN * cols, PANEL_SIZE_IN * rows + 0.6), dpi=FIG_DPI)
        FigureCanvasAgg(fig)
        edges = 0
        for k, names in enumerate(shown):
            ax = fig.add_subplot(rows, cols, k + 1)
            n_edges = _draw_panel(ax, graph, _layout(_nx_graph(graph, names)), focus=None, seen=seen)
            edges += n_edges
            ax.set_title(f"{len(names)} labels, {n_edges} edges", fontsize=FONT_SIZE + 1)
        if isolated:
            ax = fig.add_subplot(rows, cols, len(shown) + 1)
            _draw_isolated(ax, isolated, seen)
            ax.set_title(f"{len(isolated)} label{'s' if len(isolated) != 1 else ''} without edges", fontsize=FONT_SIZE + 1)
        more = f"; {sum(map(len, rest))} labels in {len(rest)} more clusters not shown (draw one with --label)" if rest else ""
        title = f"{len(graph)} labels, {graph.num_edges} edges{more}"
    handles = [Patch(color=SEEN_COLOR, label="seen"), Patch(color=UNSEEN_COLOR, label="unseen")] if seen is not None else []
    if handles:
        fig.legend(handles=handles, loc="lower right", frameon=False, fontsize=FONT_SIZE + 1)
    fig.suptitle(f"{title}\nsource: {src}; arrow: neighbour → category, width: strength", fontsize=FONT_SIZE + 3)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    fig.canvas.draw()  # lays the text boxes out, so that their extents can be measured
    for ax in fig.axes:  # once the axes have their final place: push the label boxes apart
        _spread(ax, [t for t in ax.texts if t.get_gid() == "label" and t.get_bbox_patch() is not None])
    return fig


def draw_graph(graph: CategoryGraph, out_png: str | os.PathLike[str], label: str | None = None) -> Path:
    """Draw `label`'s neighbourhood, or the whole graph in panels, to a PNG in which every label can be read.

    Edge width grows with strength; arrows point neighbour -> category (the message direction);
    seen and unseen labels have different colours (grey when the graph has no seen set).

    Args:
        graph: the graph.
        out_png: output file (written atomically).
        label: centre of the drawing; None draws the whole graph, one panel per cluster.

    Returns:
        The path written.

    Raises:
        ValueError: if `label` is not in the graph.
    """
    return save_figure(graph_figure(graph, label), out_png, format="png")
