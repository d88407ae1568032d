"""`prepare_graph`: the one way training, evaluation and prediction get a vocabulary's graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from c2srt.config import GraphCfg
from c2srt.graph import CategoryGraph, build_graph, prepare_graph

SEEN = ["dog", "cat", "car", "bus"]
UNSEEN = ["puppy", "van"]
VEC = {n: v for n, v in zip(SEEN + UNSEEN + ["x"], np.random.default_rng(2).normal(size=(7, 5)))}
VEC["puppy"] = VEC["dog"] + 0.1
VEC["van"] = VEC["bus"] + 0.1


class CountingEncoder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, names: list[str]) -> np.ndarray:
        self.calls.append(list(names))
        return np.stack([VEC[n] for n in names])


CFG = GraphCfg(source="embedding", encoder="clip", relative_cut=0.5, max_neighbors=2)


def test_builds_seen_only_then_extends_and_caches(tmp_path: Path) -> None:
    enc = CountingEncoder()
    cache, path = tmp_path / "run" / "graph.json", tmp_path / "g.json"
    g = prepare_graph(SEEN + UNSEEN, seen=SEEN, cfg=CFG, path=path, cache=cache, clip_encoder=enc)
    want = build_graph(SEEN + UNSEEN, seen=SEEN, source="embedding", encoder=CountingEncoder(), relative_cut=0.5, max_neighbors=2)
    assert g.edges() == want.edges() and [s["step"] for s in g.provenance["steps"]] == ["seen", "extend"]
    assert CategoryGraph.load(cache).edges() == g.edges() == CategoryGraph.load(path).edges()
    path.unlink()
    again = prepare_graph(SEEN + UNSEEN, seen=SEEN, cfg=CFG, path=path, cache=cache, clip_encoder=enc)
    assert enc.calls == [SEEN, UNSEEN]  # the seen labels embedded once for both steps
    assert again.edges() == g.edges() and len(enc.calls) == 2  # read from the cache: nothing embedded again


def test_a_given_graph_is_used_and_extended_to_labels_it_lacks(tmp_path: Path) -> None:
    given = CategoryGraph(SEEN, {"dog": [("cat", 0.9)], "bus": [("car", 0.4)]}, seen=SEEN)
    path = given.save(tmp_path / "given.json")
    enc = CountingEncoder()
    same = prepare_graph(SEEN, cfg=GraphCfg(source="file", path=str(path)), path=path, clip_encoder=enc)
    assert same.edges() == given.edges() and enc.calls == []
    vocab = ["van", "dog", "cat", "car", "bus", "puppy"]
    g = prepare_graph(vocab, cfg=CFG, base=given, clip_encoder=enc)
    assert set(given.edges()) <= set(g.edges())
    assert {c for _, c, _ in set(g.edges()) - set(given.edges())} == {"van", "puppy"}
    assert g.neighbors("puppy")[0][0] == "dog" and g.neighbors("van")[0][0] == "bus"
    assert enc.calls == [vocab]  # the vocabulary embedded once, served to every part of the extension


def test_file_source_without_a_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        prepare_graph(SEEN, cfg=GraphCfg(source="file", path="missing.json"), path=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="'clip' needs the model's text tower"):
        prepare_graph(SEEN, cfg=CFG)
