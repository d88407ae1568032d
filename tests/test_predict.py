"""`c2srt predict` and `c2srt.Recognizer` on the real photos with the tiny random checkpoint.

The CLI runs in process (`main([...])`). Checked: the three output formats agree and are ranked,
`--top` / `--threshold` / `--labels-file`, labels outside the checkpoint's vocabulary (graph built
on the fly) and a given `--graph`, explanation PNGs, unreadable files in a folder, no images at
all, the Python API against the CLI, and that a vocabulary is embedded once for many batches.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from c2srt.cli import main

LABELS = ["person", "bus", "dog", "cat", "tennis racket", "tie", "car", "sky"]  # the tiny checkpoint's
PHOTOS = ["bus.jpg", "cat.jpg", "tennis.jpg", "zidane.jpg"]
TABLE_ROW = re.compile(r"^\s+(\d+)\. (.+?)\s+(-?\d+\.\d{4})(?:\s+P=(\d\.\d{3}) (present|absent)\s*)?(?:\s+\((\d+) patch(?:es)?\))?$")
SCORE_TOL = 1e-4  # the table prints 4 decimals, JSON 6


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop anything printed before
    rc = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def parse_table(text: str) -> dict[str, list[tuple[str, float, int | None]]]:
    """image -> [(label, score, patches)] from the table format."""
    rows: dict[str, list[tuple[str, float, int | None]]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = line.strip()
            rows[current] = []
            continue
        m = TABLE_ROW.match(line)
        if m:
            assert current is not None
            assert int(m.group(1)) == len(rows[current]) + 1, line
            rows[current].append((m.group(2), float(m.group(3)), int(m.group(6)) if m.group(6) else None))
    return rows


def parse_json(text: str) -> dict[str, list[tuple[str, float, int | None]]]:
    return {
        item["image"]: [(d["label"], d["score"], d.get("patches")) for d in item["labels"]] for item in json.loads(text)
    }


def parse_csv(text: str) -> dict[str, list[tuple[str, float, int | None]]]:
    rows: dict[str, list[tuple[str, float, int | None]]] = {}
    for r in csv.DictReader(io.StringIO(text)):
        items = rows.setdefault(r["image"], [])
        if r["label"]:
            assert int(r["rank"]) == len(items) + 1
            items.append((r["label"], float(r["score"]), int(r["patches"]) if r["patches"] else None))
    return rows


@pytest.fixture(scope="module")
def ist_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with a non-zero IST output layer, so the graph changes the scores.

    (A fresh IST starts as the identity transfer: its output projection is zero-initialised.)
    """
    import torch

    from c2srt.checkpoint import load_checkpoint, save_checkpoint
    from c2srt.graph import CategoryGraph

    model, info = load_checkpoint(tiny_checkpoint)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = model.ist.out_proj.weight
        w.copy_(torch.randn(w.shape, generator=gen) * 0.5)
    path = tmp_path_factory.mktemp("ist") / "ist.safetensors"
    graph = CategoryGraph.from_dict(info.graph)
    return save_checkpoint(path, model, info.cfg, seen=info.seen, unseen=info.unseen, graph=graph)


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint: Path):
    from c2srt import Recognizer

    return Recognizer.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def all_scores(recognizer, photos: Path) -> dict[str, dict[str, float]]:
    """Every label's score for every photo, from the Python API."""
    preds = recognizer.predict(photos, LABELS, top=None)
    return {p.source: dict(p.labels) for p in preds}


# --------------------------------------------------------------------------- formats
def test_formats_agree_ranked_and_top_k(tiny_checkpoint: Path, photos: Path, capsys, all_scores) -> None:
    common = [photos, "--checkpoint", tiny_checkpoint, "--labels", ",".join(LABELS), "--top", "3", "--no-progress"]
    parsed = {}
    for fmt, parse in (("table", parse_table), ("json", parse_json), ("csv", parse_csv)):
        rc, out, _ = run_cli(capsys, *common, "--format", fmt)
        assert rc == 0
        parsed[fmt] = parse(out)
    expected_images = [str(photos / name) for name in PHOTOS]
    for fmt, rows in parsed.items():
        assert list(rows) == expected_images, fmt  # input order: the folder, sorted
        for image, items in rows.items():
            assert len(items) == 3, (fmt, image)
            scores = [s for _, s, _ in items]
            assert scores == sorted(scores, reverse=True), (fmt, image)
            assert all(p is not None and p >= 1 for _, _, p in items), (fmt, image)  # ISR patch counts
            best3 = sorted(all_scores[image].items(), key=lambda kv: -kv[1])[:3]
            assert [n for n, _, _ in items] == [n for n, _ in best3], (fmt, image)
            np.testing.assert_allclose(scores, [s for _, s in best3], atol=SCORE_TOL)
    for image in expected_images:  # same labels, scores and patch counts in every format
        assert [n for n, _, _ in parsed["table"][image]] == [n for n, _, _ in parsed["json"][image]]
        assert [n for n, _, _ in parsed["csv"][image]] == [n for n, _, _ in parsed["json"][image]]
        assert [p for *_, p in parsed["table"][image]] == [p for *_, p in parsed["json"][image]]
        assert [p for *_, p in parsed["csv"][image]] == [p for *_, p in parsed["json"][image]]
        np.testing.assert_allclose(
            [s for _, s, _ in parsed["csv"][image]], [s for _, s, _ in parsed["json"][image]], atol=1e-6
        )


def test_threshold_keeps_exactly_the_labels_whose_probability_passes(
    calibrated_checkpoint: Path, photos: Path, capsys, photo_decision_scores
) -> None:
    """`--threshold 0.5` keeps the labels with P >= 0.5 (P computed here from the model's decision
    scores and the stored calibrator), ranked by score; with --top, the best of those; every
    format carries score, probability and present."""
    from c2srt.calibration import load_calibrator

    cal = load_calibrator(calibrated_checkpoint)
    probs = cal(photo_decision_scores(calibrated_checkpoint, photos, LABELS))  # [photos, labels]
    base = [photos, "--checkpoint", calibrated_checkpoint, "--labels", ",".join(LABELS), "--no-progress"]
    rc, out, _ = run_cli(capsys, *base, "--threshold", "0.5", "--format", "json")
    assert rc == 0
    result = {item["image"]: item for item in json.loads(out)}
    n_kept = 0
    for i, name in enumerate(PHOTOS):
        item = result[str(photos / name)]
        want = {LABELS[k] for k in range(len(LABELS)) if probs[i, k] >= 0.5}
        got = [d["label"] for d in item["labels"]]
        assert set(got) == want, name  # exactly those: --threshold alone has no top-5 cut
        scores = [d["score"] for d in item["labels"]]
        assert scores == sorted(scores, reverse=True)  # ranked by the score, as ever
        for d in item["labels"]:
            assert d["present"] is True and d["probability"] == pytest.approx(float(probs[i, LABELS.index(d["label"])]), abs=1e-5)
        assert item["threshold"] == 0.5
        n_kept += len(got)
    assert 0 < n_kept < probs.size  # the median calibrator: some labels pass, some do not
    rc, out, _ = run_cli(capsys, *base, "--threshold", "0.5", "--top", "2", "--format", "json")
    assert rc == 0
    for item in json.loads(out):
        assert [d["label"] for d in item["labels"]] == [d["label"] for d in result[item["image"]]["labels"]][:2]
    # without --threshold: the 5 best, each with its probability and decision at 0.5, in every format
    rc, out, _ = run_cli(capsys, *base, "--format", "csv")
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 5 * len(PHOTOS)
    for r in rows:
        p = float(probs[PHOTOS.index(Path(r["image"]).name), LABELS.index(r["label"])])
        assert float(r["probability"]) == pytest.approx(p, abs=1e-5) and r["present"] == ("1" if p >= 0.5 else "0")
    rc, out, _ = run_cli(capsys, *base, "--format", "table")
    assert rc == 0 and "present" in out and "absent" in out and len(parse_table(out)[str(photos / "bus.jpg")]) == 5


def test_a_checkpoint_without_a_calibrator_ranks_and_says_so_once(tiny_checkpoint: Path, photos: Path, capsys, all_scores) -> None:
    base = [photos, "--checkpoint", tiny_checkpoint, "--labels", ",".join(LABELS), "--no-progress", "--batch-size", "1"]
    rc, out, err = run_cli(capsys, *base, "--format", "json")
    assert rc == 0
    assert err.count("has no calibrator") == 1  # once, not per batch or image
    for item in json.loads(out):
        assert len(item["labels"]) == 5 and "threshold" not in item
        assert all(d["probability"] is None and "present" not in d for d in item["labels"])
        best = sorted(all_scores[item["image"]].items(), key=lambda kv: -kv[1])[:5]
        assert [d["label"] for d in item["labels"]] == [n for n, _ in best]  # the ranking, as before
    rc, out, err = run_cli(capsys, *base, "--threshold", "0.5", "--format", "json")
    assert rc == 2 and out == ""
    assert "no calibrator" in err and "c2srt calibrate" in err


def test_labels_file_matches_labels(tiny_checkpoint: Path, photos: Path, tmp_path: Path, capsys) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("# the tiny checkpoint's labels\n" + "\n".join(LABELS[:5]) + "\n\n")
    base = [photos / "bus.jpg", "--checkpoint", tiny_checkpoint, "--format", "json", "--top", "5", "--no-progress"]
    rc1, out1, _ = run_cli(capsys, *base, "--labels-file", vocab)
    rc2, out2, _ = run_cli(capsys, *base, "--labels", ",".join(LABELS[:5]))
    assert rc1 == rc2 == 0
    assert json.loads(out1) == json.loads(out2)
    assert {d["label"] for d in json.loads(out1)[0]["labels"]} == set(LABELS[:5])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--top", "0"], "top must be >= 1"),
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--threshold", "1.5"], "threshold is a probability: it must lie in [0, 1], got 1.5"),
        (["--labels-file", "MISSING"], "MISSING"),
    ],
)
def test_bad_arguments_exit_2(tiny_checkpoint: Path, photos: Path, tmp_path: Path, capsys, argv, message) -> None:
    argv = [str(tmp_path / "missing.txt") if a == "MISSING" else a for a in argv]
    message = str(tmp_path / "missing.txt") if message == "MISSING" else message
    voc = [] if "--labels-file" in argv else ["--labels", "dog,cat"]
    rc, out, err = run_cli(capsys, photos, "--checkpoint", tiny_checkpoint, *voc, *argv, "--format", "json")
    assert rc == 2
    assert message in err
    assert out == ""  # nothing half-written on stdout


# ------------------------------------------------------------------------ vocabulary
def test_unseen_labels_get_a_graph_on_the_fly(ist_checkpoint: Path, photos: Path, capsys, monkeypatch) -> None:
    import c2srt.graph.prepare
    from c2srt.model import C2SRT

    built, used = [], []
    real_extend, real_label_set = c2srt.graph.prepare.extend_graph, C2SRT.label_set

    def spy_extend(graph, labels, **kw):
        built.append((list(labels), kw.get("source")))
        return real_extend(graph, labels, **kw)

    def spy_label_set(self, names, graph=None):
        used.append(graph)
        return real_label_set(self, names, graph)

    monkeypatch.setattr(c2srt.graph.prepare, "extend_graph", spy_extend)
    monkeypatch.setattr(C2SRT, "label_set", spy_label_set)
    vocab = ["person", "bus", "zebra", "umbrella", "tie"]
    rc, out, _ = run_cli(
        capsys, photos, "--checkpoint", ist_checkpoint, "--labels", ",".join(vocab), "--top", "5",
        "--format", "json", "--no-progress",
    )  # fmt: skip
    assert rc == 0
    rows = parse_json(out)
    assert all({n for n, _, _ in items} == set(vocab) for items in rows.values())
    assert built == [(["zebra", "umbrella"], "embedding")]  # once for the whole run, from the embedding source
    assert len(used) == 1
    graph = used[0]
    assert {"zebra", "umbrella"} <= set(graph.labels)
    assert set(graph.seen or []) >= {"person", "bus", "tie"}
    from c2srt.checkpoint import load_checkpoint
    from c2srt.graph import CategoryGraph

    _, info = load_checkpoint(ist_checkpoint)
    base = CategoryGraph.from_dict(info.graph)
    for label in ("person", "bus", "tie"):  # the checkpoint's edges are kept as they are
        assert graph.neighbors(label) == base.neighbors(label)
    for label in ("zebra", "umbrella"):  # new labels hear from the vocabulary's known labels only
        assert {n for n, _ in graph.neighbors(label)} <= {"person", "bus", "tie"}


def test_given_graph_file_is_used(ist_checkpoint: Path, photos: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import c2srt.graph.prepare
    from c2srt.graph import CategoryGraph
    from c2srt.model import C2SRT

    vocab = LABELS[:6]
    given = CategoryGraph(vocab, {"dog": [("cat", 1.0)], "bus": [("person", 0.5)]}, provenance={"source": "file"})
    path = given.save(tmp_path / "graph.json")
    used = []
    real_label_set = C2SRT.label_set

    def spy_label_set(self, names, graph=None):
        used.append(graph)
        return real_label_set(self, names, graph)

    def no_build(*a, **k):
        raise AssertionError("the given graph covers the vocabulary: nothing should be built")

    monkeypatch.setattr(C2SRT, "label_set", spy_label_set)
    monkeypatch.setattr(c2srt.graph.prepare, "build_graph", no_build)
    monkeypatch.setattr(c2srt.graph.prepare, "extend_graph", no_build)
    base = [photos, "--checkpoint", ist_checkpoint, "--labels", ",".join(vocab), "--top", "6", "--format", "json"]
    base.append("--no-progress")
    rc, out_given, _ = run_cli(capsys, *base, "--graph", path)
    assert rc == 0
    assert used[-1].edges() == given.edges()
    rc, out_ckpt, _ = run_cli(capsys, *base)
    assert rc == 0
    assert used[-1].edges() != given.edges()  # the checkpoint's graph this time
    a, b = parse_json(out_given), parse_json(out_ckpt)
    diff = [abs(dict((n, s) for n, s, _ in a[i])[n] - s) for i in a for n, s, _ in b[i]]
    assert max(diff) > 1e-4  # IST propagates over the graph: another graph, other scores


def test_permuting_the_vocabulary_permutes_the_scores(ist_checkpoint: Path, photos: Path) -> None:
    from c2srt import Recognizer

    rec = Recognizer.from_checkpoint(ist_checkpoint)  # IST on: the graph is in play
    ref = {p.source: dict(p.labels) for p in rec.predict(photos, LABELS, top=None)}
    for p in rec.predict(photos, LABELS[::-1], top=None):
        got = dict(p.labels)
        np.testing.assert_allclose([got[n] for n in LABELS], [ref[p.source][n] for n in LABELS], atol=1e-5)


def test_vocabulary_is_prepared_once_for_many_batches(tiny_checkpoint: Path, photos: Path, coco8: Path, monkeypatch) -> None:
    import c2srt.graph.prepare
    from c2srt import Recognizer
    from c2srt.backbone import ClipBackbone
    from c2srt.heads.ist import IstModule
    from c2srt.model import C2SRT
    from c2srt.text import LabelEncoder

    calls = {"encode": 0, "label_set": 0, "refine": 0, "graph": 0, "forward": 0}

    def counting(key, fn):
        def wrapper(*a, **k):
            calls[key] += 1
            return fn(*a, **k)

        return wrapper

    monkeypatch.setattr(LabelEncoder, "_encode", counting("encode", LabelEncoder._encode))
    monkeypatch.setattr(C2SRT, "label_set", counting("label_set", C2SRT.label_set))
    monkeypatch.setattr(IstModule, "refine_labels", counting("refine", IstModule.refine_labels))
    monkeypatch.setattr(c2srt.graph.prepare, "extend_graph", counting("graph", c2srt.graph.prepare.extend_graph))
    monkeypatch.setattr(ClipBackbone, "encode_image", counting("forward", ClipBackbone.encode_image))
    rec = Recognizer.from_checkpoint(tiny_checkpoint)
    n_templates = len(rec.model.label_encoder.templates)
    vocab = ["person", "bus", "giraffe", "umbrella"]  # two labels outside the checkpoint's graph
    preds = rec.predict([photos, coco8 / "images" / "val"], vocab, batch_size=3)
    assert len(preds) == 8 and all(p.error is None for p in preds)
    assert calls == {"encode": n_templates, "label_set": 1, "refine": 1, "graph": 1, "forward": 3}
    rec.predict(photos, vocab, batch_size=2)  # same vocabulary: nothing is recomputed
    assert calls == {"encode": n_templates, "label_set": 1, "refine": 1, "graph": 1, "forward": 5}
    rec.predict(photos, ["dog", "cat"], batch_size=2)  # a new one (in the graph): embedded once
    assert calls == {"encode": 2 * n_templates, "label_set": 2, "refine": 2, "graph": 1, "forward": 7}


# ---------------------------------------------------------------------- explanations
def test_explain_writes_one_png_per_image(tiny_checkpoint: Path, photos: Path, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "explain"
    rc, out, err = run_cli(
        capsys, photos, "--checkpoint", tiny_checkpoint, "--labels", ",".join(LABELS), "--top", "3",
        "--format", "json", "--explain", out_dir, "--no-progress",
    )  # fmt: skip
    assert rc == 0
    assert str(out_dir) in err
    items = json.loads(out)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(Path(n).with_suffix(".png").name for n in PHOTOS)
    for item in items:
        png = Path(item["explanation"])
        assert png.parent == out_dir and png.stem == Path(item["image"]).stem
        with Image.open(png) as im:
            assert im.format == "PNG"
            w, h = im.size
            pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
        assert w >= 4 * 250 and 150 <= h <= 1200  # four panels: the photo and three labels
        assert pixels.std() > 20  # a picture, not a blank canvas
        # the selected patches are outlined in cyan (the heatmap itself spans many colours)
        cyan = (pixels[..., 0] < 80) & (pixels[..., 1] > 180) & (pixels[..., 2] > 180)
        assert cyan.sum() > 50


def test_region_heatmaps_marks_only_selected_patches(tmp_path: Path) -> None:
    from c2srt.viz import region_heatmaps

    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    weights = np.zeros((16, 2), dtype=np.float32)  # a 4 x 4 grid, two labels
    weights[0, 0] = 1.0
    weights[[5, 6], 1] = [0.7, 0.3]
    out = region_heatmaps(image, weights, ["a", "b"], [0.9, 0.5], [1, 2], tmp_path / "r.png")
    with Image.open(out) as im:
        px = np.asarray(im.convert("RGB")).astype(int)
    cyan = (px[..., 0] < 80) & (px[..., 1] > 180) & (px[..., 2] > 180)
    assert cyan.any()
    with pytest.raises(ValueError, match="2 weight columns but 1 labels"):
        region_heatmaps(image, weights, ["a"], [0.9], [1], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="square patch grid"):
        region_heatmaps(image, weights[:15], ["a", "b"], [0.9, 0.5], [1, 2], tmp_path / "bad.png")


def test_region_overlay_against_a_hand_computation() -> None:
    """A 2 x 3 grid on a 6 x 9 crop of a 10 x 9 image: pixel values computed by hand from the constants."""
    import matplotlib

    from c2srt import viz

    image = np.full((10, 9, 3), 200, dtype=np.uint8)
    weights = np.array([0.0, 0.5, 0.0, 0.0, 0.0, 1.0])  # [N = 2 x 3]: patches (0, 1) and (1, 2) kept
    out = viz.region_overlay(image, weights, crop_box=(0, 2, 9, 8), grid=(2, 3))
    assert out.shape == image.shape and out.dtype == np.uint8
    outside = round(200 * (1 - viz.OUTSIDE_DIM))
    assert (out[:2] == outside).all() and (out[8:] == outside).all()  # rows 0-1 and 8-9 are outside the crop
    assert (out[2:5, 0:3] == round(200 * (1 - viz.UNSELECTED_DIM))).all()  # patch (0, 0): not kept

    def lit(w: float) -> np.ndarray:
        lo, hi = viz.HEAT_RANGE
        colour = np.array(matplotlib.colormaps[viz.HEAT_COLORMAP](lo + (hi - lo) * w)[:3])
        return np.round(200 * (1 - viz.SELECTED_ALPHA) + 255 * colour * viz.SELECTED_ALPHA)

    assert (np.abs(out[3, 4].astype(int) - lit(0.5)) <= 1).all()  # the centre of patch (0, 1), half the top weight
    assert (np.abs(out[6, 7].astype(int) - lit(1.0)) <= 1).all()  # the centre of patch (1, 2), the top weight
    for y, x in ((2, 3), (2, 5), (4, 4), (5, 6), (7, 8)):  # the 1 px edges of the kept patches
        assert tuple(out[y, x]) == viz.OUTLINE_RGB, (y, x)
    plain = viz.region_overlay(image, None, crop_box=(0, 2, 9, 8))  # no weights: only the model's view marked
    assert (plain[2:8] == 200).all() and (plain[:2] == outside).all()
    with pytest.raises(ValueError, match="square patch grid"):
        viz.region_overlay(image, np.ones(5))


def test_keep_labels_top_then_probability_threshold() -> None:
    from c2srt.predict import Prediction, keep_labels

    ranked = [("a", 2.9), ("b", 1.5), ("c", 0.1), ("d", -0.3)]
    probs = {"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.1}  # the ranking and the probabilities need not agree
    assert keep_labels(ranked, None, None) == ranked
    assert keep_labels(ranked, 2, None) == [("a", 2.9), ("b", 1.5)]
    assert keep_labels(ranked, None, 0.5, probs) == [("a", 2.9), ("b", 1.5), ("c", 0.1)]  # at the threshold is kept
    assert keep_labels(ranked, 3, 0.6, probs) == [("a", 2.9), ("c", 0.1)]
    assert keep_labels(ranked, None, 1.0, probs) == []
    with pytest.raises(ValueError, match="no calibrator"):
        keep_labels(ranked, None, 0.5)  # a probability threshold needs probabilities
    pred = Prediction("x.jpg", ranked)
    assert pred.shown(2, None) == keep_labels(ranked, 2, None) and pred.score("c") == 0.1
    assert not pred.decided and pred.probability("a") is None and pred.present("a") is None and pred.present_labels == []
    assert pred.shown(None, 0.5) == ranked  # without a calibrator the threshold has nothing to compare
    decided = Prediction("x.jpg", ranked, probabilities=probs, threshold=0.6)
    assert decided.present_labels == ["a", "c"] and decided.present("b") is False and decided.probability("c") == 0.7
    assert decided.to_dict()["labels"][1] == {"label": "b", "score": 1.5, "probability": 0.5, "present": False}
    with pytest.raises(ValueError, match="'zebra' is not among"):
        pred.score("zebra")
    with pytest.raises(ValueError, match="'zebra' is not among"):
        decided.probability("zebra")


def test_predictions_carry_weights_neighbours_and_crop(ist_checkpoint: Path, photos: Path) -> None:
    """What a front end shows, from one forward pass: every field checked against the model and graph directly."""
    import torch

    from c2srt import Recognizer

    rec = Recognizer.from_checkpoint(ist_checkpoint)
    vocab = LABELS[:6]
    with Image.open(photos / "zidane.jpg") as im:
        img = im.convert("RGB")
    pred, = rec.predict([img], vocab, top=3, return_weights=True)
    plain, = rec.predict([img], vocab, top=3)
    assert pred.labels == plain.labels and pred.counts == plain.counts and not plain.weights
    assert list(pred.weights) == list(pred.counts) == list(pred.neighbors) == [n for n, _ in pred.labels]
    with torch.no_grad():  # the model by hand: its patch weights for the same input
        out = rec.model(rec.transform(img)[None], rec.vocabulary(vocab), return_weights=True)
    for name, w in pred.weights.items():
        k = vocab.index(name)
        np.testing.assert_allclose(w, out.weights[0, :, k].numpy(), atol=1e-6)
        assert int((w > 0).sum()) == pred.counts[name] == int(out.counts[0, k])
    graph = rec.graph_for(vocab)
    for name, pairs in pred.neighbors.items():
        want = [(n, w) for n, w in graph.neighbors(name) if n in vocab and n != name]
        assert pairs == sorted(want, key=lambda p: (-p[1], p[0]))
    w, h = img.size
    assert h < w and pred.crop_box == ((w - h) / 2, 0, (w + h) / 2, h)  # the centre square the model sees
    zero_shot = Recognizer.from_clip("test-tiny", None)  # no IST: no graph, no neighbours
    assert zero_shot.predict([img], vocab, top=2)[0].neighbors == {}


# ---------------------------------------------------------------------- bad inputs
def test_corrupt_image_is_reported_and_skipped(tiny_checkpoint: Path, photos: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(photos / "bus.jpg", folder / "a_bus.jpg")
    shutil.copy(photos / "cat.jpg", folder / "sub" / "cat.jpg")
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg at all")
    (folder / "truncated.jpg").write_bytes((photos / "zidane.jpg").read_bytes()[:3000])
    (folder / "notes.txt").write_text("not an image, and not an image suffix either\n")
    rc, out, err = run_cli(
        capsys, folder, "--checkpoint", tiny_checkpoint, "--labels", "person,bus,cat", "--format", "json"
    )  # progress bar on: it goes to stderr, stdout stays valid JSON
    assert rc == 0
    items = json.loads(out)
    by_name = {Path(i["image"]).name: i for i in items}
    assert list(by_name) == ["a_bus.jpg", "broken.jpg", "truncated.jpg", "cat.jpg"]  # walk order, sorted
    for bad in ("broken.jpg", "truncated.jpg"):
        assert bad in by_name[bad]["error"] and by_name[bad]["labels"] == []
    for good in ("a_bus.jpg", "cat.jpg"):
        assert "error" not in by_name[good] and len(by_name[good]["labels"]) == 3
    assert "2 unreadable image(s) skipped, 2 tagged" in err
    rc, out, _ = run_cli(capsys, folder, "--checkpoint", tiny_checkpoint, "--labels", "person,bus", "--no-progress")
    assert rc == 0 and "broken.jpg" in out and "error:" in out  # the table names it too


def test_no_images_is_a_clear_error(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing to see\n")
    rc, out, err = run_cli(capsys, empty, "--checkpoint", tiny_checkpoint, "--labels", "dog", "--format", "json")
    assert rc == 2
    assert out == ""
    assert "no images found" in err and str(empty) in err
    missing = tmp_path / "missing.jpg"
    rc, out, err = run_cli(capsys, missing, "--checkpoint", tiny_checkpoint, "--labels", "dog", "--no-progress")
    assert rc == 2
    assert str(missing) in out + err and "could be read" in err


# ---------------------------------------------------------------------- Python API
def test_python_api_matches_cli(tiny_checkpoint: Path, photos: Path, capsys) -> None:
    import c2srt

    assert "Recognizer" in c2srt.__all__
    rec = c2srt.Recognizer.from_checkpoint(tiny_checkpoint)
    preds = rec.predict(photos, LABELS, top=4)
    rc, out, _ = run_cli(
        capsys, photos, "--checkpoint", tiny_checkpoint, "--labels", ",".join(LABELS), "--top", "4",
        "--format", "json", "--no-progress",
    )  # fmt: skip
    assert rc == 0
    rows = parse_json(out)
    assert [p.source for p in preds] == list(rows)
    for p in preds:
        assert [n for n, _ in p.labels] == [n for n, _, _ in rows[p.source]]
        np.testing.assert_allclose([s for _, s in p.labels], [s for _, s, _ in rows[p.source]], atol=1e-5)
        assert p.counts == {n: c for n, _, c in rows[p.source]}
    # PIL images in memory, mixed with a path, give the same scores in input order
    with Image.open(photos / "cat.jpg") as im:
        cat = im.convert("RGB")
    mixed = rec.predict([cat, photos / "bus.jpg"], LABELS, top=4, batch_size=1)
    assert [m.source for m in mixed] == ["image0", str(photos / "bus.jpg")]
    for got, want in ((mixed[0], preds[1]), (mixed[1], preds[0])):
        assert [n for n, _ in got.labels] == [n for n, _ in want.labels]
        np.testing.assert_allclose([s for _, s in got.labels], [s for _, s in want.labels], atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        rec.predict(photos, [])
    bad = rec.predict([np.zeros((4, 4, 3))], LABELS)
    assert bad[0].error is not None and "PIL image" in bad[0].error


def test_zero_shot_clip_path(photos: Path, tmp_path: Path, capsys) -> None:
    rc, out, err = run_cli(
        capsys, photos / "zidane.jpg", photos / "tennis.jpg", "--clip", "test-tiny", "--labels", "person,tennis racket,tie,ball",
        "--top", "2", "--format", "csv", "--explain", tmp_path / "ex", "--graph", tmp_path / "unused.json", "--no-progress",
    )  # fmt: skip
    assert rc == 2 and "unused.json" in err  # a --graph that does not exist is named, even when unused
    rc, out, err = run_cli(
        capsys, photos / "zidane.jpg", photos / "tennis.jpg", "--clip", "test-tiny", "--labels", "person,tennis racket,tie,ball",
        "--top", "2", "--format", "csv", "--explain", tmp_path / "ex", "--no-progress",
    )  # fmt: skip
    assert rc == 0
    rows = parse_csv(out)
    assert all(r["probability"] == r["present"] == "" for r in csv.DictReader(io.StringIO(out)))  # plain CLIP: no calibrator
    assert list(rows) == [str(photos / "zidane.jpg"), str(photos / "tennis.jpg")]  # as given
    assert all(len(v) == 2 and v[0][1] >= v[1][1] and v[0][2] >= 1 for v in rows.values())
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["tennis.png", "zidane.png"]


def test_importing_c2srt_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, warnings; warnings.simplefilter('error'); import c2srt; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False" and res.stderr == ""


def test_format_predictions_rejects_unknown_format() -> None:
    from c2srt.cli import format_predictions
    from c2srt.predict import Prediction

    preds = [Prediction("x.jpg", [("dog", 0.5)], {"dog": 1}), Prediction("y.jpg", error="y.jpg: not a readable image")]
    assert "1 patch)" in format_predictions(preds, "table")
    assert list(csv.reader(io.StringIO(format_predictions(preds, "csv"))))[2][-1] == "y.jpg: not a readable image"
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        format_predictions(preds, "xml")
