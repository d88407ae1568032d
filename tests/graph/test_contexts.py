"""The contexts mode of the LLM source: PMI rows under photo contexts, the mutual rule, the seen-only
policy, edges between unseen labels, and resuming an interrupted build. A fake language model
stands in for Gemma (tests/graph/test_llm_local.py runs the real one)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from c2srt.graph import build_graph
from c2srt.graph.contexts import NEUTRAL_FILLS, ContextScorer, context_links, pmi_strength, with_article

TEMPLATES = ("A photo of {a_category}. Behind it a", "Look: {category} with a")
LABELS = ["water", "boat", "duck", "road", "car", "fish", "bus", "crab", "star"]
SEEN = ["water", "boat", "duck", "road", "car"]
# affinity[c][n]: how much more likely n becomes after a context about c (nats); 0 elsewhere
AFFINITY = {
    "water": {"boat": 2.0, "duck": 1.5, "fish": 2.5},
    "boat": {"water": 2.0, "fish": 1.0},
    "duck": {"water": 1.8, "boat": 0.4, "fish": 0.3},
    "road": {"car": 2.2, "bus": 2.0},
    "car": {"road": 2.1, "bus": 1.2, "boat": 0.3},
    "fish": {"water": 3.0, "boat": 0.8, "duck": 0.5, "crab": 2.2},
    "bus": {"road": 2.4, "car": 1.6},
    "crab": {"fish": 1.9},
    "star": {},
}


class FakeLM:
    """A language model whose state after a prefix is the one-hot of the category the prefix names
    (plus a constant and a template offset), and whose logit for a label's token is the affinity
    of that category for the label: log p(token | prefix) = -5 - 0.01 id + offset + affinity. The
    first token of a label is its first word. Records every prefix it encodes."""

    model_id = "fake-lm"
    CATS = sorted(AFFINITY)

    def __init__(self, fail_after: int | None = None) -> None:
        self.words: dict[str, int] = {}
        self.prefixes: list[str] = []
        self.calls = 0
        self.fail_after = fail_after

    def first_token(self, text: str) -> int:
        word = text.split()[0] if text.split() else ""
        if not word:
            raise ValueError("no tokens")
        return self.words.setdefault(word, 100 + len(self.words))

    def encode(self, prefixes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.prefixes.extend(prefixes)
        hidden = np.zeros((len(prefixes), len(self.CATS) + 2), dtype=np.float32)
        for i, p in enumerate(prefixes):
            cat = next((c for c in sorted(self.CATS, key=len, reverse=True) if f" {c}." in p or f" {c} " in p), None)
            if cat is not None:
                hidden[i, self.CATS.index(cat)] = 1.0
            hidden[i, -2] = 1.0  # the constant
            hidden[i, -1] = 0.25 if p.startswith("Look") else 0.0  # the template offset
        return hidden, np.zeros(len(prefixes))

    def readout(self, hidden: np.ndarray, token_ids: Sequence[int]) -> np.ndarray:
        by_id = {v: k for k, v in self.words.items()}
        w = np.zeros((len(token_ids), len(self.CATS) + 2))  # [U, D]
        for j, t in enumerate(token_ids):
            w[j, : len(self.CATS)] = [AFFINITY[c].get(by_id[t], 0.0) for c in self.CATS]
            w[j, -2] = -5.0 - 0.01 * t
            w[j, -1] = 1.0
        return np.asarray(hidden, dtype=np.float64) @ w.T


def _matrix_rows(names: Sequence[str], m: np.ndarray):
    idx = {n: i for i, n in enumerate(names)}

    def rows(prefixes, labels, progress=None):
        return np.array([[m[idx[p], idx[q]] for q in labels] for p in prefixes], dtype=np.float32)

    return rows


def test_rows_are_pmi_averaged_over_templates_by_hand() -> None:
    lm = FakeLM()
    sc = ContextScorer(lm, templates=TEMPLATES)
    r = sc.rows(["water", "star"], ["fish", "boat", "water"])
    # the neutral fills carry no category: their log p is the base (+ the same template offset),
    # so the PMI is the affinity itself (the offsets cancel per template)
    np.testing.assert_allclose(r, [[2.5, 2.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)
    assert "A photo of a water. Behind it a" in lm.prefixes and "Look: star with a" in lm.prefixes
    assert sum(p.startswith("A photo of " + a + ".") for p in lm.prefixes for a, _ in NEUTRAL_FILLS) == 3
    assert with_article("igloo") == "an igloo" and with_article("bus") == "a bus"
    desc = sc.describe()
    assert desc["mode"] == "contexts" and desc["prompt_version"] == 2 and desc["prompt"][:2] == list(TEMPLATES)
    assert len(desc["prompt_hash"]) == 16 and desc["prompt_hash"] != ContextScorer(FakeLM(), templates=TEMPLATES[:1]).describe()["prompt_hash"]


def test_rows_in_readout_blocks_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from c2srt.graph import contexts

    whole = ContextScorer(FakeLM(), templates=TEMPLATES).rows(LABELS, LABELS)
    monkeypatch.setattr(contexts, "READOUT_ROWS", 2)
    np.testing.assert_array_equal(ContextScorer(FakeLM(), templates=TEMPLATES).rows(LABELS, LABELS), whole)
    assert whole[LABELS.index("fish"), LABELS.index("water")] == pytest.approx(3.0)


def test_labels_sharing_a_first_token_share_a_score() -> None:
    sc = ContextScorer(FakeLM(), templates=TEMPLATES)
    r = sc.rows(["road"], ["bus stop", "bus", "car"])
    assert r[0, 0] == r[0, 1] == pytest.approx(2.0)


def test_mutual_rule_by_hand() -> None:
    names = ["a", "b", "c", "d", "e"]
    m = np.array(  # m[p, q] = PMI(q | p)
        [
            [0, 3.0, 2.0, 1.0, 0.2],  # a prefers b, c, d
            [2.5, 0, 0.1, 0.1, 2.9],  # b prefers e, a
            [0.1, 0.2, 0, 1.9, 0.0],  # c prefers d, b: a is only its 3rd
            [1.0, 0.1, 2.0, 0, 0.4],  # d prefers c, a
            [0.3, 3.0, 0.2, 0.1, 0],  # e prefers b
        ]
    )
    links, below = context_links(names, names, _matrix_rows(names, m), mutual_k=2, min_pmi=0.5, max_neighbors=5)
    # a: top-2 b, c; b ranks a 2nd (mutual, min(3.0, 2.5) = 2.5); c ranks a 3rd: no
    assert links["a"] == [("b", pytest.approx(2.5))]
    # c: top-2 d, b; d ranks c 1st (min 1.9, 2.0); b ranks c 3rd: no
    assert links["c"] == [("d", pytest.approx(1.9))]
    # e: top-2 b, a; b ranks e 1st (min 3.0, 2.9); a ranks e 4th: no
    assert links["e"] == [("b", pytest.approx(2.9))]
    assert [n for n, _ in links["b"]] == ["e", "a"] and below == 0
    # the floor and the cap
    links, below = context_links(names, names, _matrix_rows(names, m), mutual_k=2, min_pmi=2.6, max_neighbors=5)
    assert links["b"] == [("e", pytest.approx(2.9))] and "a" not in links and below >= 2
    links, _ = context_links(names, names, _matrix_rows(names, m), mutual_k=2, min_pmi=0.5, max_neighbors=1)
    assert [n for n, _ in links["b"]] == ["e"]
    with pytest.raises(ValueError, match="mutual_k"):
        context_links(names, names, _matrix_rows(names, m), mutual_k=0, max_neighbors=1)


def test_new_targets_compete_only_with_the_pool() -> None:
    # target u is ranked by each pool label among the pool plus u alone (not the other targets)
    names = ["s1", "s2", "s3", "u1", "u2"]
    m = np.zeros((5, 5))
    m[3, 0], m[0, 3] = 2.0, 1.0  # u1 <-> s1: s1 ranks u1 above s2, s3 (0)
    m[4, 0], m[0, 4] = 2.0, 1.5  # u2 <-> s1: would outrank u1 if targets competed
    links, _ = context_links(["u1", "u2"], ["s1", "s2", "s3"], _matrix_rows(names, m), mutual_k=1, min_pmi=0.5, max_neighbors=3)
    assert links == {"u1": [("s1", pytest.approx(1.0))], "u2": [("s1", pytest.approx(1.5))]}


class FakeBar:
    def __init__(self) -> None:
        self.n, self.total = 0, None

    def update(self, k: int) -> None:
        self.n += k

    def refresh(self) -> None:
        pass


def test_the_progress_bar_counts_each_label_once() -> None:
    sc = ContextScorer(FakeLM(), templates=TEMPLATES)
    bar = FakeBar()
    context_links(SEEN, SEEN, sc.rows, max_neighbors=3, bar=bar)
    assert bar.n == bar.total == len(SEEN)  # the reverse rows were the same labels' states
    bar = FakeBar()
    unseen = [n for n in LABELS if n not in SEEN]
    context_links(unseen, SEEN, sc.rows, max_neighbors=3, bar=bar)
    assert bar.n == bar.total == len(unseen)  # the seen labels' states were in memory already


def _build(labels, scorer, **kw):
    return build_graph(labels, source="llm", scorer=scorer, max_neighbors=4, mutual_k=2, min_pmi=0.5, **kw)


def test_seen_edges_never_see_an_unseen_name() -> None:
    alone = _build(SEEN, ContextScorer(FakeLM(), templates=TEMPLATES), seen=SEEN)
    lm = FakeLM()
    full = _build(LABELS, ContextScorer(lm, templates=TEMPLATES), seen=SEEN)
    seen_edges = {(n, c, w) for n, c, w in full.edges() if c in SEEN}
    assert seen_edges == set(alone.edges()) and alone.num_edges > 0
    assert not any(n not in SEEN for n, c, _ in full.edges())  # unseen labels send nothing
    # fish hears water, bus hears road (mutual); star (no affinity) hears nothing
    assert full.neighbors("fish")[0][0] == "water" and full.neighbors("bus")[0][0] == "road" and not full.neighbors("star")
    assert full.neighbors("fish")[0][1] == pytest.approx(pmi_strength(2.5), abs=1e-6)  # min(PMI(water | fish) 3.0, PMI(fish | water) 2.5)
    prov = full.provenance
    assert prov["mode"] == "contexts" and prov["prompt"][:2] == list(TEMPLATES) and prov["parameters"]["mutual_k"] == 2
    assert [s["step"] for s in prov["steps"]] == ["seen", "extend"] and prov["steps"][1]["link_new"] is False


def test_link_unseen_adds_edges_between_unseen_labels_only() -> None:
    plain = _build(LABELS, ContextScorer(FakeLM(), templates=TEMPLATES), seen=SEEN)
    linked = _build(LABELS, ContextScorer(FakeLM(), templates=TEMPLATES), seen=SEEN, link_unseen=True)
    assert {e for e in linked.edges() if e[1] in SEEN} == {e for e in plain.edges() if e[1] in SEEN}
    assert linked.subgraph(SEEN).edges() == plain.subgraph(SEEN).edges()  # what training uses
    new = {(n, c) for n, c, _ in set(linked.edges()) - set(plain.edges())}
    # fish and crab prefer each other (2.2 / 1.9), unseen both: an edge each way, only when asked for
    assert new == {("fish", "crab"), ("crab", "fish")}
    assert dict(linked.neighbors("crab"))["fish"] == pytest.approx(pmi_strength(1.9), abs=1e-6)
    assert linked.provenance["steps"][1]["link_new"] is True


def test_an_interrupted_build_resumes_without_scoring_a_label_twice(tmp_path: Path) -> None:
    cache = tmp_path / "states.jsonl"
    want = _build(LABELS, ContextScorer(FakeLM(), templates=TEMPLATES, batch_size=2), seen=SEEN)
    first = ContextScorer(FakeLM(fail_after=2), templates=TEMPLATES, cache_file=cache, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        _build(LABELS, first, seen=SEEN)
    done = list(first.computed)
    assert len(done) == 4 and len(cache.read_text().splitlines()) == 4  # two batches of two labels
    with cache.open("a") as fh:  # a write cut short by the crash
        fh.write('{"key": "x", "sta')
    lm = FakeLM()
    again = ContextScorer(lm, templates=TEMPLATES, cache_file=cache, batch_size=2)
    got = _build(LABELS, again, seen=SEEN)
    assert got.edges() == want.edges()  # the same edges and strengths, to the last bit
    assert not set(done) & set(again.computed) and sorted(done + again.computed) == sorted(LABELS)  # each label scored once
    assert not [p for p in lm.prefixes if any(f" {d}." in p for d in done)]  # the model never saw them again
    third = ContextScorer(FakeLM(fail_after=1), templates=TEMPLATES, cache_file=cache)  # the neutral prefixes only
    assert _build(LABELS, third, seen=SEEN).edges() == want.edges() and third.computed == []


def test_graph_cfg_reaches_the_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    from c2srt.config import ConfigError, GraphCfg, load_config
    from c2srt.graph import build as build_mod
    from c2srt.graph import prepare_graph

    made: list[dict] = []

    def fake_scorer(**kw):
        made.append(kw)
        return ContextScorer(FakeLM(), templates=TEMPLATES)

    monkeypatch.setattr(build_mod, "make_context_scorer", fake_scorer)
    g = prepare_graph(LABELS, seen=SEEN, cfg=GraphCfg(source="llm", max_neighbors=4, mutual_k=2, link_unseen=True))
    want = _build(LABELS, ContextScorer(FakeLM(), templates=TEMPLATES), seen=SEEN, link_unseen=True)
    assert g.edges() == want.edges() and len(made) == 1  # one scorer (one model load) for both steps
    cfg = load_config(None, ["graph.source=llm", "graph.mutual_k=2", "graph.min_pmi=1.0", "graph.link_unseen=true"])
    assert (cfg.graph.llm_mode, cfg.graph.mutual_k, cfg.graph.min_pmi, cfg.graph.link_unseen) == ("contexts", 2, 1.0, True)
    with pytest.raises(ConfigError, match="graph.mutual_k"):
        load_config(None, ["graph.mutual_k=0"])
    with pytest.raises(ConfigError, match="graph.llm_mode"):
        load_config(None, ["graph.llm_mode=yesno"])
    with pytest.raises(ValueError, match="unknown local LLM mode 'yesno'; valid modes: contexts, pmi"):
        build_graph(SEEN, source="llm", llm_mode="yesno")
