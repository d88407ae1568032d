"""Graph pictures: panels that cover every label once, readable labels (no two boxes overlap), a
neighbourhood view, deterministic output, atomic PNG files."""

from __future__ import annotations

from pathlib import Path

import pytest

from c2srt.graph import CategoryGraph
from c2srt.graph.draw import EGO_MAX_NODES, MAX_PANEL_NODES, draw_graph, graph_figure, graph_panels, label_overlaps
from test_names import MINIWORLD_LIKE


def _small() -> CategoryGraph:
    labels = ["dog", "cat", "ball", "fork", "knife", "spoon", "zebra", "lamp"]
    nbrs = {"dog": [("cat", 0.9), ("ball", 0.4)], "cat": [("dog", 0.8)], "fork": [("knife", 1.0), ("spoon", 0.7)], "spoon": [("fork", 0.6)], "zebra": [("dog", 0.3)]}
    return CategoryGraph(labels, nbrs, seen=["dog", "cat", "fork", "knife"], provenance={"source": "test"})


def _miniworld_like() -> CategoryGraph:
    """68 labels in clusters like the demo's: colours of a shape link to the shape and to each other,
    scene things to their region; one label ('flower') has no edge."""
    nbrs: dict[str, list[tuple[str, float]]] = {}
    for name in MINIWORLD_LIKE:
        if " " in name:
            colour, shape = name.split()
            nbrs[name] = [(shape, 0.8)] + [(f"{c} {shape}", 0.5) for c in ("red", "blue", "green") if c != colour][:2]
    scene = {"sun": "sky", "cloud": "sky", "airplane": "sky", "bird": "sky", "fish": "water", "boat": "water", "tree": "grass",
             "house": "road", "car": "road", "snowman": "snow", "mountain": "snow", "umbrella": "sand"}  # fmt: skip
    for thing, region in scene.items():
        nbrs[thing] = [(region, 0.7)]
    return CategoryGraph(MINIWORLD_LIKE, nbrs, seen=MINIWORLD_LIKE[:55], provenance={"source": "test"})


@pytest.fixture(scope="module")
def world() -> CategoryGraph:
    return _miniworld_like()


def _drawn(fig: object) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "label"]  # type: ignore[attr-defined]


def test_panels_cover_every_label_once(world: CategoryGraph) -> None:
    panels, isolated = graph_panels(world)
    flat = [n for p in panels for n in p] + isolated
    assert sorted(flat) == sorted(world.labels) and len(flat) == len(set(flat))
    assert all(1 < len(p) <= MAX_PANEL_NODES for p in panels)
    assert isolated == ["flower"]
    # Each colour family (a clique around its shape, 7 labels) stays in one panel.
    for shape in ("ball", "box", "star"):
        family = {n for n in world.labels if n.split()[-1] == shape}
        assert any(family <= set(p) for p in panels), shape
    assert graph_panels(world) == (panels, isolated)  # deterministic


def test_whole_graph_every_label_readable(world: CategoryGraph) -> None:
    fig = graph_figure(world)
    assert sorted(_drawn(fig)) == sorted(world.labels)  # every label, once
    assert label_overlaps(fig) == []
    # Deterministic: the same graph gives the same picture.
    again = graph_figure(world)
    pos = [t.get_position() for ax in fig.axes for t in ax.texts]
    assert pos == [t.get_position() for ax in again.axes for t in ax.texts]


def test_neighbourhood_view(world: CategoryGraph) -> None:
    fig = graph_figure(world, "sky")
    drawn = _drawn(fig)
    assert drawn[0] == "sky" and {"sun", "cloud", "airplane", "bird"} <= set(drawn) and len(drawn) <= EGO_MAX_NODES
    assert label_overlaps(fig) == []
    assert "neighbourhood of 'sky'" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="'unicorn'"):
        graph_figure(world, "unicorn")


def test_label_overlaps_finds_overlaps() -> None:
    """The check the tests rely on does see two boxes on top of each other."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name in ("teddy bear", "teddy"):
        ax.text(0.5, 0.5, name, gid="label", bbox=dict(boxstyle="round"))
    assert label_overlaps(fig) == [("teddy bear", "teddy")]


def test_draw_png(tmp_path: Path) -> None:
    g = _small()
    out = draw_graph(g, tmp_path / "dog.png", label="dog")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert draw_graph(g, tmp_path / "sub" / "all.png").is_file()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["all.png", "dog.png", "sub"]  # no temporary files left
    with pytest.raises(ValueError, match="'unicorn'"):
        draw_graph(g, tmp_path / "x.png", label="unicorn")
    assert not (tmp_path / "x.png").exists()
