"""The training graph is built over seen labels alone, then extended with the unseen ones.

No unseen name may shape a seen-to-seen edge: not through the candidate prefilter, the per-label
cut or the neighbour cap. Checked for both sources, against a brute-force construction.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from c2srt.graph import CategoryGraph, build_graph, extend_graph
from c2srt.graph.embedding import adaptive_cut
from c2srt.graph.llm import RelationAnswer

SEEN = [f"s{i}" for i in range(10)]
# each unseen label is a near-copy of a seen one: it would crowd that label's neighbour list
UNSEEN = ["u0", "u1", "u2", "u3"]
TWIN = {"u0": "s0", "u1": "s3", "u2": "s3", "u3": "s7"}


def _vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    vec = {n: rng.normal(size=8) for n in SEEN}
    for u, s in TWIN.items():
        vec[u] = vec[s] + 0.05 * rng.normal(size=8)
    return vec


VEC = _vectors()


def encoder(names: list[str]) -> np.ndarray:
    return np.stack([VEC[n] for n in names])


def _seen_edges(g: CategoryGraph) -> set[tuple[str, str, float]]:
    return {(n, c, w) for n, c, w in g.edges() if n in SEEN and c in SEEN}


KW = dict(source="embedding", encoder=encoder, candidates=4, relative_cut=0.5, min_strength=0.05, max_neighbors=2)


def test_seen_edges_do_not_depend_on_unseen_names() -> None:
    alone = build_graph(SEEN, seen=SEEN, **KW)
    full = build_graph(SEEN + UNSEEN, seen=SEEN, **KW)
    assert _seen_edges(full) == _seen_edges(alone) == set(alone.edges())
    assert full.labels == SEEN + UNSEEN and full.seen == SEEN
    # the test has teeth: one graph over all names (no seen list) changes seen-to-seen edges
    assert _seen_edges(build_graph(SEEN + UNSEEN, **KW)) != _seen_edges(alone)


def test_unseen_labels_receive_edges_from_seen_ones_only() -> None:
    full = build_graph(UNSEEN + SEEN, seen=SEEN, **KW)  # any vocabulary order
    assert full.labels == UNSEEN + SEEN
    unit = {n: v / np.linalg.norm(v) for n, v in VEC.items()}
    for u in UNSEEN:
        sims = sorted(((float(unit[u] @ unit[s]), -i) for i, s in enumerate(SEEN)), reverse=True)[:4]  # 4 candidates
        kept = adaptive_cut([(-j, s) for s, j in sims], relative_cut=0.5, min_score=0.05, max_neighbors=2)
        want = [(SEEN[j], s) for j, s in kept]
        got = full.neighbors(u)
        assert [n for n, _ in got] == [n for n, _ in want]
        np.testing.assert_allclose([w for _, w in got], [w for _, w in want], rtol=1e-6)
        assert got and got[0][0] == TWIN[u]
    assert not any(n in UNSEEN for n, _, _ in full.edges())  # no edge out of an unseen label
    steps = full.provenance["steps"]
    assert [s["step"] for s in steps] == ["seen", "extend"]
    assert steps[0]["labels"] == len(SEEN) and steps[1]["labels"] == len(UNSEEN) and steps[1]["link_from"] == len(SEEN)
    assert steps[0]["edges"] + steps[1]["edges"] == full.num_edges


class FakeScorer:
    """Relates every candidate with a strength fixed by the (category, candidate) pair; records prompts."""

    batch_size = 3

    def __init__(self) -> None:
        self.seen_prompts: list[tuple[str, list[str]]] = []

    def describe(self) -> dict[str, str]:
        return {"backend": "openai", "model": "fake"}

    def relate(self, batch):
        out = []
        for cat, cands in batch:
            self.seen_prompts.append((cat, list(cands)))
            pairs = [(c, int(hashlib.sha256(f"{cat}|{c}".encode()).hexdigest(), 16) % 100 / 100) for c in cands]
            out.append(RelationAnswer(cat, pairs))
        return out


def test_llm_source_never_shows_an_unseen_name_for_a_seen_label() -> None:
    kw = dict(KW, source="llm", relative_cut=None, min_strength=None)
    alone = build_graph(SEEN, seen=SEEN, scorer=FakeScorer(), **kw)
    scorer = FakeScorer()
    full = build_graph(SEEN + UNSEEN, seen=SEEN, scorer=scorer, **kw)
    assert _seen_edges(full) == set(alone.edges())
    for cat, cands in scorer.seen_prompts:
        assert not set(cands) & set(UNSEEN), (cat, cands)
    assert {cat for cat, _ in scorer.seen_prompts} == set(SEEN + UNSEEN)
    assert full.provenance["llm_backend"] == "openai" and [s["step"] for s in full.provenance["steps"]] == ["seen", "extend"]


def test_extend_keeps_every_edge_of_the_base_graph() -> None:
    base = CategoryGraph(["s0", "s1", "s2"], {"s0": [("s1", 0.4)], "s1": [("s2", 1.0)]}, seen=["s0", "s1", "s2"])
    ext = extend_graph(base, ["u0", "s1"], **{k: v for k, v in KW.items() if k != "source"})
    assert ext.labels == ["s0", "s1", "s2", "u0"]
    assert set(base.edges()) <= set(ext.edges())
    assert {c for _, c, _ in set(ext.edges()) - set(base.edges())} == {"u0"}
    assert ext.neighbors("u0")[0][0] == "s0"
    assert ext.provenance["steps"][-1]["step"] == "extend"
    with pytest.raises(ValueError, match="link_from label 'zz'"):
        extend_graph(base, ["u1"], link_from=["zz"], encoder=encoder)


def test_link_unseen_lets_unseen_labels_link_to_each_other_and_nothing_else_changes() -> None:
    plain = build_graph(SEEN + UNSEEN, seen=SEEN, **KW)
    linked = build_graph(SEEN + UNSEEN, seen=SEEN, link_unseen=True, **KW)
    assert linked.subgraph(SEEN).edges() == plain.subgraph(SEEN).edges()  # what training uses
    # u1 and u2 are both near-copies of s3: each now has the other among its neighbours
    assert "u2" in [n for n, _ in linked.neighbors("u1")] and "u1" in [n for n, _ in linked.neighbors("u2")]
    assert not any(n in UNSEEN for n, _, _ in plain.edges())
    assert all(n != c for n, c, _ in linked.edges())
    assert linked.provenance["steps"][1]["link_new"] is True and plain.provenance["steps"][1]["link_new"] is False
