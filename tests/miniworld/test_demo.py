"""The demo's pieces against independent computations, and `c2srt demo --quick` end to end.

The end-to-end test builds the category graph from text embeddings (`--graph-source embedding`):
the local language model needs a minute or more to load, and tests/graph/test_llm_local.py
exercises it already. Everything else is the real demo: the shipped CLIP stand-in (or, in a
checkout without it, a quick one pretrained into the temporary cache), the world report, every
row on the benchmark scenes, the tables, results.json and the pictures.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from c2srt.cli import main
from c2srt.metrics import average_precision, mean_average_precision, topk_prf
from c2srt.miniworld import demo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _valid_png(path) -> bool:
    if not path.is_file() or path.read_bytes()[:8] != PNG_MAGIC:
        return False
    with Image.open(path) as im:
        im.verify()  # raises on a truncated or corrupt file
    return True


# --- uncertainty -------------------------------------------------------------------------------
def test_interval_is_the_t_interval():
    values = [0.30, 0.32, 0.31, 0.35, 0.29]
    mean, half = demo.interval(values)
    sd = math.sqrt(sum((v - 0.314) ** 2 for v in values) / 4)
    assert mean == pytest.approx(0.314) and half == pytest.approx(2.776445 * sd / math.sqrt(5), rel=1e-5)  # t(0.975, 4)
    assert demo.interval([0.5])[0] == 0.5 and math.isnan(demo.interval([0.5])[1])


def test_summary_pairs_seeds_and_breaks_down_by_group():
    unseen = ["a", "b", "c"]
    groups = {"small": ["a"], "large": ["b", "c"], "correlated": ["a", "b"], "uncorrelated": ["c"]}

    def result(shift: float, ap: list[float]) -> dict:
        return {**{c: 0.5 + shift for c in demo.COLUMNS}, "zsl_ap": ap}

    per_seed = {
        "ref": [result(0.0, [0.2, 0.4, 0.6]), result(0.1, [0.3, 0.5, 0.7])],
        "new": [result(0.02, [0.3, 0.4, 0.6]), result(0.13, [0.3, 0.6, 0.7])],
    }
    s = demo.summarise(per_seed, reference="ref", unseen_names=unseen, groups=groups)
    assert s["rows"]["ref"]["zsl/mAP"]["mean"] == pytest.approx(0.55)
    assert s["paired"]["new"]["zsl/mAP"]["mean"] == pytest.approx(0.025)  # differences 0.02 and 0.03
    assert s["paired"]["new"]["zsl/mAP"]["ci95"] == pytest.approx(12.7062 * 0.005, rel=1e-4)  # t(0.975, 1) * sd / sqrt(2)
    assert "ref" not in s["paired"]
    assert s["breakdown"]["ref"]["large"]["mean"] == pytest.approx((0.5 + 0.6) / 2)  # means of (0.4, 0.6) and (0.5, 0.7)
    assert s["paired_breakdown"]["new"]["small"]["mean"] == pytest.approx(0.05)  # +0.1, then 0.0
    table = demo.format_tables(s, reference="ref", groups=groups, seeds=[0, 1])
    assert "| new | 57.5 ± " in table and "Paired difference against ref" in table and "| new | +2.5 ± " in table


# --- scoring and figures -----------------------------------------------------------------------
@pytest.mark.parametrize("zero_shot", [False, True])
def test_evaluate_row_scores_zsl_as_a_pass_over_the_unseen_labels(tmp_path, zero_shot):
    """Against an independent computation: the model run on the unseen labels alone (ZSL), on all (GZSL)."""
    from c2srt.config import Cfg, merge_config
    from c2srt.data.base import build_dataset
    from c2srt.model import create_model, eval_transform

    torch.manual_seed(0)
    cfg = merge_config(Cfg(), {"data": {"name": "miniworld", "options": {"n_test": 24}}, "eval": {"batch_size": 10}})
    model = create_model("test-tiny", head=cfg.model.head, distill=False).eval()  # the head fuses by an L2 norm across the labels scored
    result = demo.evaluate_row(model, cfg, zero_shot=zero_shot)

    ds = build_dataset(cfg.data, "test", eval_transform(model))
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    seen = np.asarray(ds.seen_mask)
    names = ds.label_names
    unseen_names = [n for n, s in zip(names, seen) if not s]
    with torch.no_grad():
        if zero_shot:
            gzsl = model.zero_shot(images, names).numpy()
            zsl = gzsl[:, ~seen]
        else:
            zsl = model(images, unseen_names).logits.numpy()
            gzsl = model(images, names).logits.numpy()
    y = np.asarray(ds.labels)
    assert result["zsl/mAP"] == pytest.approx(mean_average_precision(zsl, y[:, ~seen]), abs=1e-6)
    assert result["gzsl/mAP"] == pytest.approx(mean_average_precision(gzsl, y), abs=1e-6)
    assert result["zsl/F1@3"] == pytest.approx(topk_prf(zsl, y[:, ~seen], 3)[2], abs=1e-6)
    assert result["gzsl/F1@5"] == pytest.approx(topk_prf(gzsl, y, 5)[2], abs=1e-6)
    np.testing.assert_allclose(result["zsl_ap"], average_precision(zsl, y[:, ~seen]), atol=1e-6)


def test_row_configs_cover_every_row_with_its_own_folder(tmp_path):
    spec = demo.load_demo_spec()
    names = [r["name"] for r in spec["zero_shot"] + spec["variants"]]
    assert spec["reference"] in names and len(names) == 8
    folders = set()
    for row in spec["zero_shot"] + spec["variants"]:
        cfg = demo.row_config(spec, row, tmp_path, quick=True, seed=3, pretrained="w.safetensors", graph_path="g.json")
        assert cfg.seed == 3 and cfg.data.options["seed"] == 3 and cfg.model.pretrained == "w.safetensors"
        assert cfg.data.options["n_train"] == spec["quick"]["data"]["options"]["n_train"]
        folders.add(cfg.output_dir)
    assert len(folders) == 8
    full = demo.row_config(spec, spec["variants"][-1], tmp_path, quick=False, seed=0, pretrained="w", graph_path=None)
    assert (full.model.head.name, full.model.ist.mode, full.model.distill) == ("isr", "image", True)
    assert full.output_dir.endswith("c2srt_full/seed0") and full.train.val_every > 0
    later = demo.row_config(spec, spec["variants"][-1], tmp_path, quick=False, seed=1, pretrained="w", graph_path=None, curves=False)
    assert later.train.val_every == 0 and later.train.epochs == full.train.epochs  # no curves, same training


def test_each_control_row_changes_one_thing_and_each_part_pairs_existing_rows(tmp_path):
    """A control is a main row with its graph swapped (edges: none / random / oracle) or, for the
    scoring control, the reference with `model.head.scoring: cosine`; parts name rows that exist."""
    spec = demo.load_demo_spec()
    rows = {r["name"]: r for r in spec["zero_shot"] + spec["variants"] + spec["controls"]}

    def cfg(name):
        return demo.row_config(spec, rows[name], tmp_path, quick=False, seed=0, pretrained="w", graph_path="g.json")

    twins = {"none": ", no edges", "random": ", random graph", "oracle": ", oracle graph (upper bound)"}
    for row in spec["controls"]:
        if "edges" in row:
            twin = row["name"].removesuffix(twins[row["edges"]])
            assert cfg(row["name"]).model == cfg(twin).model and cfg(row["name"]).train == cfg(twin).train
        elif row["model"]["ist"]["mode"] == "off":  # the scoring rule alone: the reference scored by cosines
            ref = cfg(spec["reference"])
            assert cfg(row["name"]).model.head.scoring == "cosine"
            assert dataclasses.replace(cfg(row["name"]).model, head=ref.model.head) == ref.model
            assert dataclasses.replace(cfg(row["name"]).model.head, scoring="fused") == ref.model.head
        else:  # IST image without a part of its design: only model.ist's evidence settings differ
            mine, full = cfg(row["name"]).model, cfg("+ IST image").model
            assert dataclasses.replace(mine, ist=full.ist) == full and mine.ist != full.ist
            assert dataclasses.replace(mine.ist, evidence=full.ist.evidence, evidence_dropout=full.ist.evidence_dropout) == full.ist
    assert {r.get("edges") for r in spec["controls"]} >= {"none", "random", "oracle"}
    for part in spec["parts"]:
        assert part["row"] in rows and part["against"] in rows, part


def test_control_graphs_for_every_kind_and_seed(tmp_path):
    from c2srt.graph import CategoryGraph
    from c2srt.miniworld.report import world_cooccurrence
    from c2srt.miniworld.world import MiniWorld

    world = MiniWorld(0)
    names, seen = world.label_names, world.seen_names
    library = CategoryGraph(names, {"fish": [("duck", 0.6)], "car": [("boat", 0.5)], "bus": [("car", 0.7)]}, seen=seen)
    path = tmp_path / "g.json"
    library.save(path)
    paths = demo.control_graphs(library, path, world, {None, "none", "random", "oracle"}, [0, 1], tmp_path, max_neighbors=3)
    assert paths[None, 1] == str(path) and CategoryGraph.load(paths["none", 0]).num_edges == 0
    r0, r1 = CategoryGraph.load(paths["random", 0]), CategoryGraph.load(paths["random", 1])
    assert r0.num_edges == r1.num_edges == 3 and r0.to_dict()["neighbors"] != r1.to_dict()["neighbors"]
    oracle = CategoryGraph.load(paths["oracle", 0])
    stats = world_cooccurrence(world)
    truth = stats.true_edges()
    index = {n: i for i, n in enumerate(names)}
    assert oracle.num_edges > 20 and all(len(oracle.neighbors(c)) <= 3 for c in names)
    assert all(truth[index[n], index[c]] for c in names for n, _ in oracle.neighbors(c))  # true edges only
    assert ("water", 1.0) in oracle.neighbors("fish")  # fish lives on water: P(water | fish) = 1
    with pytest.raises(ValueError, match="unknown row edges"):
        demo.control_graphs(library, path, world, {"bogus"}, [0], tmp_path, max_neighbors=3)


def test_parts_are_paired_differences_of_their_rows():
    unseen = ["a", "b"]
    groups = {"small": ["a"], "large": ["b"], "correlated": ["a"], "uncorrelated": ["b"]}

    def result(v: float, ap: list[float]) -> dict:
        return {**{c: v for c in demo.COLUMNS}, "zsl_ap": ap}

    per_seed = {"ref": [result(0.5, [0.1, 0.2]), result(0.6, [0.2, 0.2])], "x": [result(0.55, [0.3, 0.2]), result(0.62, [0.3, 0.1])]}
    parts = [{"part": "the x part", "row": "x", "against": "ref"}, {"part": "missing", "row": "nope", "against": "ref"}]
    s = demo.summarise(per_seed, reference="ref", unseen_names=unseen, groups=groups, parts=parts)
    assert list(s["parts"]) == ["the x part"]  # a part whose rows did not run is left out
    x = s["parts"]["the x part"]
    assert x["zsl/mAP"]["mean"] == pytest.approx(0.035) and x["correlated"]["mean"] == pytest.approx(0.15)
    assert x["uncorrelated"]["mean"] == pytest.approx(-0.05)
    table = demo.format_tables(s, reference="ref", groups=groups, seeds=[0, 1])
    assert "| the x part | x − ref | +3.5 ± " in table


# --- end to end --------------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "cache"
    rc = main(["demo", "--quick", "--controls", "--output-dir", str(out), "--cache-dir", str(cache), "--graph-source", "embedding"])
    assert rc == 0
    printed = capsys.readouterr().out.splitlines()
    spec = demo.load_demo_spec()
    rows = [r["name"] for r in spec["zero_shot"] + spec["variants"] + spec["controls"]]
    progress = [line for line in printed if line.startswith("[")]
    assert len(progress) == len(rows) and all(f"] {name} (seed 0)" in line for line, name in zip(progress, rows))
    header = next(line for line in printed if line.startswith("| method |"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["method", "ZSL mAP", "ZSL F1@3", "ZSL F1@5", "GZSL mAP", "GZSL F1@3", "GZSL F1@5"]
    assert not [line for line in printed if "INFO" in line or "Loading weights" in line]  # no wall of logs

    report = json.loads((out / "results.json").read_text())
    assert list(report["summary"]["rows"]) == rows and report["quick"] is True and report["seeds"] == [0]
    for name in rows:
        for column in demo.COLUMNS:
            mean = report["summary"]["rows"][name][column]["mean"]
            assert math.isfinite(mean) and 0.0 <= mean <= 1.0, (name, column, mean)
        assert len(report["per_seed"][name][0]["zsl_ap"]) == len(report["unseen"])
    assert report["graph_source"] == "embedding"
    assert (out / "results.md").read_text().startswith("Mini-world ablation")
    assert "What each part of IST adds" not in (out / "results.md").read_text()  # one seed: no paired interval
    assert report["machine"]["cpu_gflops"] > 0 and "GFLOP/s" in printed[-1]
    assert {"graph-no-edges.json", "graph-oracle.json", "graph-random-seed0.json"} <= {p.name for p in out.iterdir()}
    world = json.loads((out / "world.json").read_text())
    assert {r["label"] for r in world["labels"]} >= set(report["unseen"])
    assert report["full_model"].endswith("c2srt_full/seed0/model.safetensors") and (out / "c2srt_full/seed0/model.safetensors").is_file()

    # tag decisions: every row has its figures (the zero-shot rows a calibrator fitted on the held-out scenes)
    assert list(report["summary"]["decisions"]) == rows
    for name in rows:
        for column in demo.DECISION_COLUMNS:
            mean = report["summary"]["decisions"][name][column]["mean"]
            assert math.isfinite(mean) and 0.0 <= mean <= 1.0, (name, column, mean)
    assert "## Tag decisions" in (out / "results.md").read_text() and "| method | seen ECE |" in "\n".join(printed)
    assert report["timings_s"]["decisions_s"] > 0 and report["reliability"] == str(out / "reliability.png")
    from c2srt.checkpoint import read_checkpoint_info

    calibration = read_checkpoint_info(out / "c2srt_full/seed0/model.safetensors").calibration
    assert calibration["provenance"]["images"] == spec["quick"]["calibration"]["holdout"]

    pictures = [out / "world.png", out / "curves.png", out / "graph.png", out / "reliability.png", *sorted((out / "regions").glob("*.png"))]
    assert len(pictures) >= 5
    for png in pictures:
        assert _valid_png(png), png


def test_the_shipped_graph_is_the_one_the_demo_settings_ask_for(tmp_path, monkeypatch):
    """demo.yaml's graph settings find the shipped file (no rebuild); other settings would not."""
    import dataclasses

    from c2srt.config import Cfg, merge_config
    from c2srt.graph import CategoryGraph
    from c2srt.miniworld.world import MiniWorld

    def no_build(*args, **kwargs):
        raise AssertionError("the demo rebuilt its graph")

    monkeypatch.setattr("c2srt.graph.prepare_graph", no_build)
    spec = demo.load_demo_spec()
    world = MiniWorld(0)
    names, seen = list(world.label_names), list(world.seen_names)
    for quick in (False, True):
        cfg = merge_config(Cfg(), demo.base_config(spec, quick=quick)).graph
        path = demo.demo_graph(names, seen, cfg=cfg, cache_dir=tmp_path)
        assert path.parent.name == "assets"
    graph = CategoryGraph.load(path)
    assert graph.provenance["mode"] == "contexts" and graph.seen == seen
    assert graph.subgraph(seen).num_edges == graph.provenance["steps"][0]["edges"]  # training's graph: the seen step alone
    cfg = merge_config(Cfg(), demo.base_config(spec, quick=False)).graph
    keys = {demo.graph_key(names, seen, cfg.source, cfg.candidates, cfg.max_neighbors, **demo._graph_settings(c))
            for c in (cfg, dataclasses.replace(cfg, link_unseen=not cfg.link_unseen), dataclasses.replace(cfg, mutual_k=cfg.mutual_k + 1))}
    assert len(keys) == 3


# --- tag decisions -----------------------------------------------------------------------------
def _ece_loop(p, hit, n_bins=15):
    total = 0.0
    for b in range(n_bins):
        members = [e for e in range(len(p)) if min(int(p[e] * n_bins), n_bins - 1) == b]
        if members:
            total += len(members) / len(p) * abs(np.mean(hit[members]) - np.mean(p[members]))
    return total


def _f1_loop(pred, hit):
    tp = sum(1 for a, b in zip(pred, hit) if a and b)
    n = sum(pred) + sum(hit)
    return 2 * tp / n if n else 0.0


def test_evaluate_row_decision_figures_against_an_independent_computation(tmp_path):
    """On a toy case (24 test scenes, the tiny random model, a fixed calibrator): every decision
    figure of `evaluate_row` recomputed here with plain loops from the model's decision scores."""
    from c2srt.calibration import Calibrator
    from c2srt.config import Cfg, merge_config
    from c2srt.data.base import build_dataset
    from c2srt.model import create_model, eval_transform

    torch.manual_seed(0)
    cfg = merge_config(Cfg(), {"data": {"name": "miniworld", "options": {"n_test": 24}}, "eval": {"batch_size": 10}})
    model = create_model("test-tiny", head=cfg.model.head, distill=False).eval()
    ds = build_dataset(cfg.data, "test", eval_transform(model))
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    names, seen = ds.label_names, np.asarray(ds.seen_mask)
    with torch.no_grad():
        s = model.decision_scores(images, names).numpy()  # [24, 35]
        seen_logits = model(images, [n for n, k in zip(names, seen) if k]).logits.numpy()  # a pass over the seen labels alone
        zsl_logits = model(images, [n for n, k in zip(names, seen) if not k]).logits.numpy()
    a = 30.0
    cal = Calibrator("platt", {"a": torch.tensor(a, dtype=torch.float64), "b": torch.tensor(-a * float(np.median(s)), dtype=torch.float64)})
    result = demo.evaluate_row(model, cfg, calibrator=cal, seed=3, reliability=tmp_path / "reliability.png")

    p_all = cal(s).astype(np.float64)
    y_all = np.asarray(ds.labels)
    assert set(np.unique(y_all)) <= {-1, 1}  # the mini-world annotates every entry
    for group, cols, logits in (("seen", seen, seen_logits), ("unseen", ~seen, zsl_logits)):
        p, hit = p_all[:, cols], y_all[:, cols] == 1
        flat_p, flat_hit = p.ravel(), hit.ravel()
        got = {k.split("/")[-1]: v for k, v in result.items() if k.startswith(f"decision/{group}/")}
        # the scores here come from one batch of 24, the row's from batches of 10: float32 rounding apart
        assert got["ECE"] == pytest.approx(_ece_loop(flat_p, flat_hit), abs=1e-6)
        assert got["Brier"] == pytest.approx(float(np.mean((flat_p - flat_hit) ** 2)), abs=1e-6)
        assert got["F1@0.5"] == pytest.approx(_f1_loop(list(flat_p >= 0.5), list(flat_hit)), abs=1e-9)
        per_col = [_f1_loop(list(p[:, c] >= 0.5), list(hit[:, c])) for c in range(p.shape[1]) if hit[:, c].any()]
        assert got["macroF1@0.5"] == pytest.approx(float(np.mean(per_col)), abs=1e-9)
        thresholds = [*np.unique(flat_p), np.inf]  # every distinct decision a single threshold can make
        assert got["oracle_F1"] == pytest.approx(max(_f1_loop(list(flat_p >= t), list(flat_hit)) for t in thresholds), abs=1e-9)
        assert got["F1@3"] == pytest.approx(topk_prf(logits, y_all[:, cols], 3)[2], abs=1e-6)  # the ranking's top 3
        assert 0 < got["F1@0.5"] <= got["oracle_F1"]
    # no IST: a label's probability is the same inside any vocabulary (last-bit differences only)
    assert 0 <= result["decision/invariance/max"] <= 1e-5 and result["decision/invariance/mean"] <= result["decision/invariance/max"]
    assert result["decision/seconds"] > 0 and _valid_png(tmp_path / "reliability.png")
    assert "decision/seen/ECE" not in demo.evaluate_row(model, cfg)  # no calibrator: no decision figures


def test_small_vocabularies_hold_each_label_once_with_random_others(monkeypatch):
    """`vocabulary_invariance_of` scores every (image, label) once, inside a seeded random vocabulary
    of 5 labels (the remainder joins the last), different per batch."""
    from c2srt.model import create_model

    torch.manual_seed(0)
    model = create_model("test-tiny", distill=False).eval()
    names = [f"label {i}" for i in range(12)]
    vocabularies: list[list[str]] = []
    real = model.decision_scores

    def spy(images, labels, **kw):
        vocabularies.append(list(labels.names))
        return real(images, labels, **kw)

    monkeypatch.setattr(model, "decision_scores", spy)

    class Toy(torch.utils.data.Dataset):
        label_names = names

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"image": torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i)), "target": torch.ones(12, dtype=torch.long), "index": i}

    small = demo.vocabulary_invariance_of(model, Toy(), seed=1, batch_size=2)
    assert small.shape == (4, 12)
    assert [len(v) for v in vocabularies] == [5, 7, 5, 7]  # per batch of 2 images: 12 = 5 + 7
    for batch in (vocabularies[:2], vocabularies[2:]):
        assert sorted(n for v in batch for n in v) == sorted(names)  # each label once per batch
    assert vocabularies[:2] != vocabularies[2:]  # a new draw per batch
    again = demo.vocabulary_invariance_of(model, Toy(), seed=1, batch_size=2)
    np.testing.assert_array_equal(small, again)  # seeded
    with torch.no_grad():
        full = real(torch.stack([Toy()[i]["image"] for i in range(4)]), names).numpy()
    np.testing.assert_allclose(small, full, rtol=0, atol=1e-6)


def test_decision_table_lists_rows_with_a_calibrator():
    figures = {c: 0.1 for c in demo.DECISION_COLUMNS}
    per_seed = {
        "ref": [{**{c: 0.5 for c in demo.COLUMNS}, "zsl_ap": [0.2], **figures}, {**{c: 0.5 for c in demo.COLUMNS}, "zsl_ap": [0.2], **figures}],
        "no calibrator": [{**{c: 0.5 for c in demo.COLUMNS}, "zsl_ap": [0.2]}] * 2,
    }
    groups = {g: ["a"] for g in demo.GROUPS}
    s = demo.summarise(per_seed, reference="ref", unseen_names=["a"], groups=groups)
    assert list(s["decisions"]) == ["ref"] and s["decisions"]["ref"]["decision/unseen/ECE"]["mean"] == pytest.approx(0.1)
    table = demo.format_decision_table(s, seeds=[0, 1])
    assert table.startswith("Tag decisions") and "| ref | 10.0 ± 0.0 |" in table and "no calibrator" not in table.split("\n", 3)[-1]
    assert demo.format_decision_table({"decisions": {}}, seeds=[0]) == ""
