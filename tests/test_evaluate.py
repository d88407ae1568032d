"""c2srt.evaluate: protocols against a plain-python reference; streaming == in memory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from c2srt.evaluate import StreamingEvaluator, evaluate, format_table
from c2srt.metrics import mean_average_precision, topk_prf


# ----------------------------------------------------------------------------- plain-python reference
def _ap(entries: list[tuple]) -> float:
    """entries: (sort key..., label); sorted ascending by key; NaN without positive."""
    hits, total = 0, 0.0
    for rank, e in enumerate(sorted(entries), start=1):
        if e[-1] == 1:
            hits += 1
            total += hits / rank
    return total / hits if hits else math.nan


def ref_protocol(scores, labels, unseen, protocol: str, ks, empty: str = "zero", pooled: bool = False) -> dict:
    """The published protocols, written out with loops over Python lists."""
    s, y = scores.tolist(), labels.tolist()
    n, c = len(s), len(s[0])
    blocks = {"zsl": [j for j in range(c) if unseen[j]], "gzsl": list(range(c)), "seen": [j for j in range(c) if not unseen[j]]}
    if protocol == "nus_wide":
        blocks.pop("seen")
    oi = protocol == "open_images"
    out: dict[str, float] = {}
    for name, cols in blocks.items():
        rows = [i for i in range(n) if not oi or any(y[i][j] == 1 for j in cols)]
        aps, weights, pooled_aps = [], [], []
        for j in cols:
            entries = [(-s[i][j], i, y[i][j]) for i in rows if y[i][j] != 0]
            if oi and not entries:
                continue  # Open Images: only columns annotated in the kept rows
            ap = _ap(entries)
            weights.append(sum(e[-1] == 1 for e in entries))
            if not math.isnan(ap) or empty == "zero":
                aps.append(0.0 if math.isnan(ap) else ap)
            if pooled:
                rows_j = [i for i in rows if y[i][j] != 0]
                pap = _ap([(-s[i][t], i, t, y[i][t]) for i in rows_j for t in cols if y[i][t] != 0])
                if not math.isnan(pap) or empty == "zero":
                    pooled_aps.append(0.0 if math.isnan(pap) else pap)
        out[f"{name}/mAP"] = sum(aps) / len(aps) if aps else math.nan
        raw = [_ap([(-s[i][j], i, y[i][j]) for i in rows if y[i][j] != 0]) for j in cols]
        if oi:
            raw = [a for a, j in zip(raw, cols) if any(y[i][j] != 0 for i in rows)]
        out[f"{name}/mAP_weighted"] = sum(w * a for w, a in zip(weights, raw) if w) / sum(weights) if sum(weights) else math.nan
        if pooled:
            out[f"{name}/mAP_row_pooled"] = sum(pooled_aps) / len(pooled_aps) if pooled_aps else math.nan
        n_pos = sum(y[i][j] == 1 for i in rows for j in cols)
        for k in ks:
            tp = 0
            for i in rows:
                top = sorted(cols, key=lambda j: (-s[i][j], j))[:k]
                tp += sum(y[i][j] == 1 for j in top)
            p = tp / (len(rows) * k) if rows else 0.0
            r = tp / n_pos if n_pos else 0.0
            out[f"{name}/P@{k}"], out[f"{name}/R@{k}"] = p, r
            out[f"{name}/F1@{k}"] = 2 * p * r / (p + r) if tp else 0.0
        out[f"{name}/n_images"] = len(rows)
    return out


def sparse_case(seed: int, n: int = 70, c: int = 12, n_unseen: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-Images-like: each row has a few annotations, scores with ties."""
    rng = np.random.default_rng(seed)
    s = (np.round(rng.random((n, c)) * 10) / 10).astype(np.float32)
    y = np.zeros((n, c), dtype=np.int64)
    for i in range(n):
        cols = rng.choice(c, size=rng.integers(0, 5), replace=False)
        y[i, cols] = rng.choice([-1, 1], size=cols.size, p=[0.6, 0.4])
    unseen = np.zeros(c, dtype=bool)
    unseen[c - n_unseen :] = True
    return s, y, unseen


def assert_close(got: dict, ref: dict) -> None:
    for key, v in ref.items():
        assert key in got, key
        assert got[key] == pytest.approx(v, abs=1e-9, nan_ok=True), key


# ----------------------------------------------------------------------------- agreement with the reference
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("protocol", ["open_images", "nus_wide", "generic"])
@pytest.mark.parametrize("empty", ["zero", "skip"])
def test_matches_plain_python_reference(seed: int, protocol: str, empty: str) -> None:
    s, y, unseen = sparse_case(seed, c=12 + 10 * seed)  # 22, 32 columns: spill buckets hold several
    got = evaluate(s, y, protocol, unseen_mask=unseen, topk=(2, 3), empty=empty, row_pooled=True)
    assert_close(got, ref_protocol(s, y, unseen, protocol, (2, 3), empty=empty, pooled=True))


def test_nus_wide_equals_metric_functions() -> None:
    s, y, unseen = sparse_case(7, n=50, n_unseen=6)
    y[y == 0] = -1  # NUS-WIDE is fully annotated
    got = evaluate(s, y, "nus_wide", seen_mask=~unseen, unseen_mask=unseen)
    assert set(k.split("/")[0] for k in got) == {"zsl", "gzsl"}
    assert got["zsl/mAP"] == mean_average_precision(s[:, unseen], y[:, unseen])
    assert got["gzsl/mAP"] == mean_average_precision(s, y)
    for k in (3, 5):  # NUS_WIDE_TOPK by default
        p, r, f1 = topk_prf(s[:, unseen], y[:, unseen], k)
        assert (got[f"zsl/P@{k}"], got[f"zsl/R@{k}"], got[f"zsl/F1@{k}"]) == (p, r, f1)


def test_open_images_hand_worked() -> None:
    # columns 0, 1 seen; column 2 unseen
    s = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.7], [0.3, 0.6, 0.5]], dtype=np.float32)
    y = np.array([[1, 0, -1], [-1, 0, 1], [0, 0, -1]])
    got = evaluate(s, y, "open_images", unseen_mask=[False, False, True], topk=(1,))
    # zsl keeps row 1 only (the only row with an unseen positive): column 2 ranks just (0.7, +)
    assert got["zsl/n_images"] == 1 and got["zsl/mAP"] == 1.0 and got["zsl/P@1"] == 1.0
    # seen keeps row 0; column 1 is never annotated there -> left out; column 0 ranks (0.9, +)
    assert got["seen/n_images"] == 1 and got["seen/n_classes"] == 1 and got["seen/mAP"] == 1.0
    # gzsl keeps rows 0, 1; col 0: 0.9+, 0.1- -> 1; col 2: 0.7+, 0.4- -> 1; col 1 unannotated
    assert got["gzsl/n_images"] == 2 and got["gzsl/n_classes"] == 2 and got["gzsl/mAP"] == 1.0
    # gzsl top-1: row 0 -> col 0 (+), row 1 -> col 1 (unknown) -> TP 1 of 2 positives
    assert (got["gzsl/P@1"], got["gzsl/R@1"]) == (0.5, 0.5)
    # the row-free generic protocol sees row 2's negative and the empty column 1 (AP 0)
    gen = evaluate(s, y, "generic", unseen_mask=[False, False, True], topk=(1,))
    assert gen["gzsl/n_images"] == 3 and gen["gzsl/n_classes"] == 3


# ----------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("protocol", ["open_images", "nus_wide"])
@pytest.mark.parametrize("n_cols", [15, 53])  # 53 columns: several columns share a spill bucket
def test_chunked_equals_unchunked(protocol: str, n_cols: int) -> None:
    s, y, unseen = sparse_case(11, n=97, c=n_cols, n_unseen=5)
    kw = dict(unseen_mask=unseen, topk=(1, 4), row_pooled=True)
    whole = evaluate(s, y, protocol, chunk_rows=10_000, **kw)
    for chunk, max_entries in [(1, 3), (7, 20), (33, 10_000)]:
        assert evaluate(s, y, protocol, chunk_rows=chunk, max_entries=max_entries, **kw) == whole


def test_torch_chunks_and_temp_files_removed(tmp_path: Path) -> None:
    s, y, unseen = sparse_case(3)
    ref = evaluate(s, y, "open_images", unseen_mask=unseen, topk=(2,))
    ev = StreamingEvaluator("open_images", None, torch.from_numpy(unseen), topk=(2,), workdir=tmp_path)
    assert ev.workdir.parent == tmp_path
    for a in range(0, s.shape[0], 16):
        ev.update(torch.from_numpy(s[a : a + 16]), torch.from_numpy(y[a : a + 16]))
    assert any(ev.workdir.iterdir())  # spilled
    assert ev.compute() == ref
    assert list(tmp_path.iterdir()) == []  # cleaned up
    assert ev.compute() == ref  # cached
    with pytest.raises(RuntimeError, match="after compute"):
        ev.update(s[:1], y[:1])


def test_context_manager_cleans_up(tmp_path: Path) -> None:
    with StreamingEvaluator("generic", workdir=tmp_path) as ev:
        ev.update(np.zeros((2, 3), np.float32), np.ones((2, 3)))
    assert list(tmp_path.iterdir()) == []


def test_published_sizes_without_masks() -> None:
    rng = np.random.default_rng(0)
    s = rng.random((4, 1006)).astype(np.float32)
    y = rng.choice([-1, 1], size=(4, 1006))
    got = evaluate(s, y, "nus_wide")
    assert got["zsl/n_classes"] == 81 and got["gzsl/n_classes"] == 1006
    with pytest.raises(ValueError, match="expects 1006 columns"):
        evaluate(s[:, :10], y[:, :10], "nus_wide")


def test_k_larger_than_block_is_nan(caplog: pytest.LogCaptureFixture) -> None:
    s, y, unseen = sparse_case(1, c=6, n_unseen=2)
    got = evaluate(s, y, "generic", unseen_mask=unseen, topk=(3,))
    assert "not defined" in caplog.text
    assert math.isnan(got["zsl/P@3"]) and math.isfinite(got["gzsl/P@3"])


def test_format_table() -> None:
    s, y, unseen = sparse_case(2)
    res = evaluate(s, y, "open_images", unseen_mask=unseen, topk=(10, 20))
    table = format_table(res)
    lines = table.splitlines()
    assert lines[0].split("|")[1].strip() == "block"
    assert "F1@10" in lines[0] and "P@20" in lines[0]
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["zsl", "gzsl", "seen"]
    assert f"{100 * res['zsl/mAP']:.1f}" in lines[2]
    assert format_table({}) == ""


# ----------------------------------------------------------------------------- errors
def test_errors() -> None:
    with pytest.raises(ValueError, match="protocol='coco'"):
        StreamingEvaluator("coco")
    with pytest.raises(ValueError, match="overlap at column 1"):
        StreamingEvaluator("generic", [True, True], [False, True])
    with pytest.raises(ValueError, match="topk"):
        StreamingEvaluator("generic", topk=(3, 3))
    ev = StreamingEvaluator("generic", seen_mask=[True, True, False])
    with pytest.raises(ValueError, match=r"chunk 0: scores \(2, 3\) and labels \(2, 4\)"):
        ev.update(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="chunk 0: 4 columns, expected 3"):
        ev.update(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="chunk 0 labels: value 3"):
        ev.update(np.zeros((2, 3)), np.full((2, 3), 3))
    ev.update(np.zeros((2, 3), np.float32), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="float64 cannot be stored losslessly"):
        ev.update(np.zeros((2, 3), np.float64), np.zeros((2, 3)))
    ev.close()
    with pytest.raises(ValueError, match="same shape"):
        evaluate(np.zeros((2, 3)), np.zeros((3, 3)))


# ----------------------------------------------------------------- each block its own pass
def _listing(root: Path, coco8: Path, photos: Path, seen: list[str], unseen: list[str]) -> None:
    """A small JSONL dataset over the real COCO8 images and photos (each also mirrored and turned:
    36 distinct pictures, so no two rows tie), labels drawn at random."""
    import json

    from PIL import Image

    images = []
    for src in sorted((coco8 / "images").rglob("*.jpg")) + sorted(photos.glob("*.jpg")):
        with Image.open(src) as im:
            for t, op in enumerate((None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90)):
                path = root / f"{src.stem}_{t}.jpg"
                (im if op is None else im.transpose(op)).convert("RGB").resize((64, 48)).save(path)
                images.append(path)
    rng = np.random.default_rng(5)
    vocab = seen + unseen
    for split in ("train", "test"):
        rows = []
        for i in range(3 if split == "train" else 36):
            labels = [vocab[j] for j in rng.choice(len(vocab), size=3, replace=False)]
            rows.append({"image": str(images[i % len(images)]), "labels": labels})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "seen.txt").write_text("\n".join(seen) + "\n")
    (root / "unseen.txt").write_text("\n".join(unseen) + "\n")


def test_c2srt_eval_scores_zsl_as_a_pass_over_the_unseen_vocabulary(tmp_path: Path, coco8: Path, photos: Path) -> None:
    """What `c2srt eval` reports for ZSL equals an independent pass over the unseen labels alone
    (MKT's L2 fusion across those labels only), on data where the unseen columns of the GZSL pass
    score differently; GZSL is the pass over all labels."""
    from c2srt.checkpoint import save_checkpoint
    from c2srt.cli import main
    from c2srt.config import Cfg, DataCfg, EvalCfg, HeadCfg, ModelCfg
    from c2srt.data import build_dataset
    from c2srt.model import create_model, eval_transform

    seen = ["person", "bus", "dog", "cat", "car", "tie"]
    unseen = ["giraffe", "umbrella", "tennis racket", "kite"]
    _listing(tmp_path, coco8, photos, seen, unseen)
    torch.manual_seed(0)
    mcfg = ModelCfg(backbone="test-tiny", pretrained=None, distill=False, head=HeadCfg(name="mkt", topk=4, similarity="raw"))
    cfg = Cfg(model=mcfg, data=DataCfg(name="jsonl", root=str(tmp_path), num_workers=0), eval=EvalCfg(topk=[1, 3], batch_size=7))
    model = create_model(mcfg, teacher=False).eval()
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, cfg, seen=seen, unseen=unseen)
    assert main(["eval", "--checkpoint", str(ckpt), "--output-dir", str(tmp_path / "ev")]) == 0
    import json

    got = json.loads((tmp_path / "ev" / "eval.json").read_text())

    ds = build_dataset(cfg.data, "test", eval_transform(model))
    names = ds.label_names
    is_unseen = np.asarray(ds.unseen_mask)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    y = ds.targets.numpy()
    with torch.no_grad():
        alone = model(images, [n for n, u in zip(names, is_unseen) if u]).logits.numpy()  # the unseen vocabulary alone
        full = model(images, names).logits.numpy()  # one pass over every label
    zsl = ref_protocol(alone, y[:, is_unseen], np.ones(int(is_unseen.sum()), bool), "generic", (1, 3))
    gzsl = ref_protocol(full, y, is_unseen, "generic", (1, 3))
    for fig in ("mAP", "P@1", "F1@1", "F1@3"):
        assert got[f"zsl/{fig}"] == pytest.approx(zsl[f"zsl/{fig}"], abs=1e-6), fig
        assert got[f"gzsl/{fig}"] == pytest.approx(gzsl[f"gzsl/{fig}"], abs=1e-6), fig
    # the two ways differ on this data: the unseen columns of the full pass are not the ZSL scores
    old = gzsl  # its "zsl" block is the unseen columns of the full pass
    assert any(abs(old[f"zsl/{fig}"] - zsl[f"zsl/{fig}"]) > 1e-3 for fig in ("mAP", "P@1", "F1@3"))


@pytest.mark.parametrize("protocol", ["open_images", "nus_wide", "generic"])
def test_blockwise_evaluator_on_shared_scores_equals_the_streaming_one(protocol: str, tmp_path: Path) -> None:
    """Fed one score matrix (scores without a normalisation across labels), each block evaluated
    on its own columns gives exactly the figures of the one-matrix evaluator, row-pooled AP too."""
    from c2srt.evaluate import BlockwiseEvaluator

    s, y, unseen = sparse_case(3)
    kw = dict(topk=(2, 3), row_pooled=True)
    want = evaluate(s, y, protocol, None, unseen, workdir=tmp_path, **kw)
    with BlockwiseEvaluator(protocol, ~unseen, unseen, workdir=tmp_path, **kw) as ev:
        for a in range(0, len(s), 16):
            ev.update(s[a : a + 16], y[a : a + 16])
        got = ev.compute()
    assert got.keys() == want.keys() and any(k.endswith("mAP_row_pooled") for k in got)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, nan_ok=True), k
    assert "mAP_row_pooled" in format_table(got)


def test_skip_bad_unreadable_test_image_is_skipped_and_counted_alike_by_every_caller(
    tmp_path: Path, coco8: Path, photos: Path
) -> None:
    """`data.skip_bad=true` and a test image that only fails while loading: `c2srt eval`,
    `evaluate_model` and the demo's row scoring are one loop (before, the two single-process loops
    batched with torch's default collate and failed on the `"skipped"` lists). The image is
    skipped, counted once, its place taken by the next readable image, which is scored once."""
    import json

    from c2srt.checkpoint import save_checkpoint
    from c2srt.cli import main
    from c2srt.config import Cfg, DataCfg, EvalCfg, HeadCfg, ModelCfg
    from c2srt.data import build_dataset
    from c2srt.evaluate import evaluate_model, evaluate_split
    from c2srt.miniworld.demo import evaluate_row
    from c2srt.model import create_model, eval_transform

    seen, unseen = ["person", "bus", "dog", "cat", "car", "tie"], ["giraffe", "umbrella", "tennis racket", "kite"]
    _listing(tmp_path, coco8, photos, seen, unseen)
    rows = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    broken = Path(rows[5]["image"])
    broken.write_bytes(b"not an image")  # exists (so the listing reads), fails only when decoded
    torch.manual_seed(0)
    mcfg = ModelCfg(backbone="test-tiny", pretrained=None, distill=False, head=HeadCfg(name="mkt", topk=4))
    data = DataCfg(name="jsonl", root=str(tmp_path), num_workers=0, skip_bad=True, check_images=False)
    cfg = Cfg(model=mcfg, data=data, eval=EvalCfg(topk=[1, 3], batch_size=7))
    model = create_model(mcfg, teacher=False).eval()
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, cfg, seen=seen, unseen=unseen)

    assert main(["eval", "--checkpoint", str(ckpt), "--output-dir", str(tmp_path / "ev")]) == 0
    got = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert got["data/skipped_images"] == 1 and got["data/skipped_rows"] == 0
    assert got["gzsl/n_images"] == len(rows) - 1  # the replacement image is scored once

    result = evaluate_split(model, cfg)
    assert result.skipped == [5]
    for k, v in result.figures.items():  # the same figures (NaN is null in the JSON)
        assert (got[k] is None and math.isnan(v)) or got[k] == v, k
    ds = build_dataset(cfg.data, "test", eval_transform(model))
    figures = evaluate_model(model, ds, protocol="generic", topk=(1, 3), batch_size=7)
    assert figures["zsl/mAP"] == got["zsl/mAP"] and figures["gzsl/F1@3"] == got["gzsl/F1@3"]
    row = evaluate_row(model, cfg)
    assert row["zsl/mAP"] == got["zsl/mAP"] and len(row["zsl_ap"]) == len(unseen)
    assert np.mean(row["zsl_ap"]) == pytest.approx(got["zsl/mAP"])


@pytest.mark.parametrize("evaluate_figures", [True, False])
def test_run_evaluation_keeps_the_decision_scores_of_the_same_pass(evaluate_figures: bool) -> None:
    """`decision=True`: the decision scores of the whole vocabulary ([N, K], the model's own) and the
    targets come from the evaluation's image pass; the figures are unchanged by it; without
    figures (`evaluate=False`) the decision scores alone (what a calibrator is fitted on)."""
    from c2srt.config import Cfg, merge_config
    from c2srt.data import build_dataset
    from c2srt.evaluate import run_evaluation
    from c2srt.model import create_model, eval_transform

    torch.manual_seed(0)
    cfg = merge_config(Cfg(), {"data": {"name": "miniworld", "options": {"n_test": 13}}})
    model = create_model("test-tiny", head=cfg.model.head, distill=False).eval()
    ds = build_dataset(cfg.data, "test", eval_transform(model))
    plain = run_evaluation(model, ds, batch_size=5)
    both = run_evaluation(model, ds, batch_size=5, decision=True, evaluate=evaluate_figures)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        want = model.decision_scores(images, ds.label_names).numpy()
    assert both.decision is not None and both.decision.shape == (13, len(ds.label_names))
    np.testing.assert_allclose(both.decision, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(both.targets, ds.targets.numpy())
    assert plain.decision is None and plain.targets is None
    assert both.figures == (plain.figures if evaluate_figures else {})
