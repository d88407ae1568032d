"""Drawing: a deterministic layout and a readable PNG of a neighbourhood / a whole small graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from c2srt.graph import CategoryGraph
from c2srt.graph.draw import draw_graph, spring_layout


def _graph() -> CategoryGraph:
    labels = ["dog", "cat", "ball", "fork", "knife", "spoon", "zebra"]
    nbrs = {"dog": [("cat", 0.9), ("ball", 0.4)], "cat": [("dog", 0.8)], "fork": [("knife", 1.0), ("spoon", 0.7)], "spoon": [("fork", 0.6)], "zebra": [("dog", 0.3)]}
    return CategoryGraph(labels, nbrs, seen=["dog", "cat", "fork", "knife"], provenance={"source": "test"})


def test_spring_layout_deterministic_and_bounded() -> None:
    edges = [(0, 1, 1.0), (1, 2, 0.5), (3, 4, 1.0)]
    a = spring_layout(5, edges)
    np.testing.assert_array_equal(a, spring_layout(5, edges))
    assert a.shape == (5, 2) and np.isfinite(a).all() and np.abs(a).max() <= 1.0 + 1e-9
    # Strongly linked nodes end closer than unlinked ones.
    assert np.linalg.norm(a[3] - a[4]) < np.linalg.norm(a[0] - a[4])
    assert spring_layout(0, []).shape == (0, 2) and spring_layout(1, []).shape == (1, 2)


def test_draw_png(tmp_path: Path) -> None:
    g = _graph()
    out = draw_graph(g, tmp_path / "dog.png", label="dog")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert draw_graph(g, tmp_path / "all.png").is_file()
    assert not list(tmp_path.glob(".*"))
    with pytest.raises(ValueError, match="'unicorn'"):
        draw_graph(g, tmp_path / "x.png", label="unicorn")
