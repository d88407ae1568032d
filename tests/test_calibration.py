"""c2srt.calibration: the calibrator against direct fits and scikit-learn, monotone, stored inside the
checkpoint (round trip, weights untouched, atomic), the held-out split, and `c2srt calibrate`."""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from c2srt.calibration import (
    Calibrator,
    DatasetPart,
    calibrate_checkpoint,
    fit_calibrator,
    fit_isotonic,
    fit_platt,
    holdout_count,
    holdout_split,
    load_calibrator,
    split_dataset,
)
from c2srt.checkpoint import CALIBRATOR_PREFIX, load_checkpoint, read_checkpoint_info, save_checkpoint, write_calibrator
from c2srt.config import CalibrationCfg, Cfg, HeadCfg, ModelCfg, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "coco8" / "tiny.yaml"


def scores_case(seed: int, n: int = 400, slope: float = 3.0, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scores with labels drawn from sigma(slope * s - 1): (scores [n], labels [n] in {+1, -1})."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    if ties:
        s = np.round(s, 1)
    y = np.where(rng.random(n) < 1.0 / (1.0 + np.exp(-(slope * s - 1.0))), 1, -1)
    return s, y


def smoothed(y: np.ndarray) -> np.ndarray:
    n_pos, n_neg = int((y == 1).sum()), int((y == -1).sum())
    return np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


# ------------------------------------------------------------------------------ fitting
@pytest.mark.parametrize("seed", range(3))
def test_platt_is_the_minimum_of_its_loss(seed: int) -> None:
    from scipy.optimize import minimize

    s, y = scores_case(seed)
    a, b = fit_platt(s, y == 1)
    t = smoothed(y)
    ref = minimize(lambda w: np.sum(np.logaddexp(0, w[0] * s + w[1]) - t * (w[0] * s + w[1])), [1.0, 0.0], method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose([a, b], ref.x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_isotonic_matches_sklearn(seed: int) -> None:
    from sklearn.isotonic import IsotonicRegression

    s, y = scores_case(seed, ties=seed != 1)
    x, v = fit_isotonic(s, y == 1)
    ref = IsotonicRegression(out_of_bounds="clip").fit(s, (y == 1).astype(float))
    n_pos, n_neg = int((y == 1).sum()), int((y == -1).sum())
    clipped = np.clip(ref.y_thresholds_, 1 / (n_neg + 2), (n_pos + 1) / (n_pos + 2))  # no probability 0 or 1
    grid = np.linspace(s.min() - 1, s.max() + 1, 2001)
    cal = Calibrator("isotonic", {"x": torch.from_numpy(x), "y": torch.from_numpy(v)})
    np.testing.assert_allclose(cal(grid), np.interp(grid, ref.X_thresholds_, clipped), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
@pytest.mark.parametrize("seed", range(3))
def test_calibrator_is_monotone_and_a_probability(method: str, seed: int) -> None:
    s, y = scores_case(seed, n=300)
    cal = Calibrator.fit(s.reshape(30, 10), y.reshape(30, 10), method=method)
    grid = torch.linspace(-10, 10, 5001, dtype=torch.float64)
    p = cal(grid)
    assert p.dtype == torch.float64 and ((p >= 0) & (p <= 1)).all()
    assert (p[1:] >= p[:-1]).all()  # non-decreasing everywhere, outside the data too
    assert p[-1] > p[0]  # and informative
    as_numpy = cal(s.astype(np.float32))
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32 and as_numpy.shape == s.shape
    fit = cal.provenance["fit"]
    assert fit["entries"] == 300 and fit["positives"] == int((y == 1).sum()) and 0 <= fit["ece"] <= 1


def test_unknown_entries_are_left_out_of_the_fit() -> None:
    s, y = scores_case(0, n=200)
    y2 = y.copy()
    y2[:50] = 0  # unknown
    with_unknown = Calibrator.fit(s, y2)
    without = Calibrator.fit(s[50:], y[50:])
    assert with_unknown.provenance["fit"]["entries"] == 150
    torch.testing.assert_close(with_unknown.params["a"], without.params["a"])


def test_scores_that_fall_with_the_labels_give_a_flat_map(caplog: pytest.LogCaptureFixture) -> None:
    s, y = scores_case(0)
    with caplog.at_level(logging.WARNING, logger="c2srt.calibration"):
        cal = Calibrator.fit(s, -y)  # anti-correlated
    assert float(cal.params["a"]) == 0.0
    p = cal(torch.tensor([-3.0, 0.0, 3.0]))
    assert torch.allclose(p, p[0].expand(3)) and abs(float(p[0]) - float(np.mean(smoothed(-y)))) < 1e-6  # float32 in, float32 out
    assert "do not rise with the labels" in caplog.text


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(4), np.array([1, 1, 1, 1])), "positives and negatives"),
        ((np.zeros(4), np.array([0, 0, 0, 0])), "no annotated"),
        ((np.zeros((2, 2)), np.zeros((2, 3))), "same shape"),
    ],
)
def test_fit_errors(args, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        Calibrator.fit(*args)
    with pytest.raises(ValueError, match="method must be one of platt, isotonic"):
        Calibrator.fit(np.zeros(2), np.array([1, -1]), method="beta")


def test_malformed_calibrator_tensors_are_refused() -> None:
    with pytest.raises(ValueError, match="missing tensor"):
        Calibrator("platt", {"a": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="slope a must be >= 0"):
        Calibrator("platt", {"a": torch.tensor(-1.0), "b": torch.tensor(0.0)})
    with pytest.raises(ValueError, match="increasing x"):
        Calibrator("isotonic", {"x": torch.tensor([0.0, 0.0]), "y": torch.tensor([0.1, 0.2])})
    with pytest.raises(ValueError, match="model.safetensors: calibrator"):
        Calibrator.from_state_dict({}, {"method": "platt"}, where="model.safetensors: calibrator")


# ------------------------------------------------------------------------------ held-out split
def test_holdout_split_is_deterministic_disjoint_and_sized() -> None:
    train, held = holdout_split(100, 0.1, seed=3)
    assert held.size == 10 and train.size == 90
    assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(100))
    again = holdout_split(100, 0.1, seed=3)
    assert np.array_equal(again[1], held) and np.array_equal(again[0], train)
    assert not np.array_equal(holdout_split(100, 0.1, seed=4)[1], held)
    assert holdout_split(100, 25, seed=0)[1].size == 25  # a number of images
    assert holdout_split(100, 0.5, seed=0, max_holdout=7)[1].size == 7
    assert holdout_count(10, 0.01) == 1  # a fraction holds out at least one image
    assert holdout_count(10, 0) == 0 and holdout_split(10, 0, seed=0)[1].size == 0
    for bad in (10, 2.5, -0.1):
        with pytest.raises(ValueError, match="calibration.holdout"):
            holdout_count(10, bad)


def test_split_dataset_keeps_the_dataset_contract() -> None:
    from c2srt.miniworld.dataset import MiniWorldDataset

    ds = MiniWorldDataset("train", n=20)
    train, held = split_dataset(ds, CalibrationCfg(holdout=0.25, seed=1))
    assert isinstance(held, DatasetPart) and len(held) == 5 and len(train) == 15
    assert held.label_names == ds.label_names and torch.equal(held.seen_mask, ds.seen_mask)
    i = int(held.indices[2])
    assert held.image_path(2) == ds.image_path(i)
    sample = held[2]
    assert sample["index"] == 2 and torch.equal(sample["target"], ds[i]["target"])
    assert set(held.indices.tolist()).isdisjoint(train.indices.tolist())


def test_calibration_config_keys() -> None:
    cfg = load_config(None, ["calibration.holdout=200", "calibration.seed=5", "calibration.method=isotonic"])
    assert cfg.calibration == CalibrationCfg(holdout=200.0, max_holdout=1000, seed=5, method="isotonic")
    for bad, key in (("calibration.holdout=2.5", "calibration.holdout"), ("calibration.method=beta", "calibration.method")):
        with pytest.raises(ValueError, match=key):
            load_config(None, [bad])


# ------------------------------------------------------------------------------ checkpoints
def _tiny(tmp_path: Path, head: str = "isr") -> tuple[Path, object]:
    from c2srt.model import create_model

    torch.manual_seed(0)
    mcfg = ModelCfg(backbone="test-tiny", pretrained=None, distill=False, head=HeadCfg(name=head, k_max=8))
    model = create_model(mcfg, teacher=False).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, Cfg(model=mcfg), seen=["dog", "cat"], unseen=["car"])
    return path, model


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_calibrator_round_trips_through_the_checkpoint_and_leaves_the_weights(tmp_path: Path) -> None:
    path, model = _tiny(tmp_path)
    before = path.read_bytes()
    weights = _tensors(path)
    s, y = scores_case(0)
    cal = Calibrator.fit(s, y, provenance={"data": {"name": "x"}, "seed": 3})
    write_calibrator(path, cal)
    after = _tensors(path)
    assert {k for k in after if not k.startswith(CALIBRATOR_PREFIX)} == set(weights)
    for k, v in weights.items():  # bit-identical
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    info = read_checkpoint_info(path)
    assert info.calibration["method"] == "platt" and info.calibration["provenance"]["seed"] == 3
    again = load_calibrator(path)
    assert again.method == "platt" and again.provenance == cal.provenance
    torch.testing.assert_close(again(torch.linspace(-2, 2, 9)), cal(torch.linspace(-2, 2, 9)), rtol=0, atol=0)
    # the model loads as before and scores the same
    loaded, _ = load_checkpoint(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, ["dog", "car"]).logits, model(x, ["dog", "car"]).logits, rtol=0, atol=0)
    # replaced, not added: a second calibrator
    iso = Calibrator.fit(s, y, method="isotonic")
    out = write_calibrator(path, iso, out=tmp_path / "other.safetensors")
    assert path.read_bytes() != before and load_calibrator(path).method == "platt"  # `out` leaves the source alone
    assert load_calibrator(out).method == "isotonic" and not any(k.endswith(".a") for k in _tensors(out) if k.startswith(CALIBRATOR_PREFIX))
    # saved with the model directly
    direct = save_checkpoint(tmp_path / "d.safetensors", model, Cfg(model=model.cfg), calibrator=iso)
    torch.testing.assert_close(load_calibrator(direct).params["x"], iso.params["x"])
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_checkpoint_without_calibrator_still_loads_ranks_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, model = _tiny(tmp_path)
    assert read_checkpoint_info(path).calibration is None
    with caplog.at_level(logging.INFO, logger="c2srt.calibration"):
        assert load_calibrator(path) is None
    assert "has no calibrator" in caplog.text and "c2srt calibrate" in caplog.text
    loaded, _ = load_checkpoint(path)
    with torch.no_grad():
        logits = loaded(torch.randn(2, 3, 32, 32), ["dog", "cat", "car"]).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_a_failed_write_leaves_the_checkpoint_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import c2srt.io as io_mod

    path, _ = _tiny(tmp_path)
    before = path.read_bytes()

    def full(p: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod, "_fsync_file", full)
    s, y = scores_case(0)
    with pytest.raises(OSError, match="m.safetensors"):
        write_calibrator(path, Calibrator.fit(s, y))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_fit_calibrator_scores_a_dataset_and_records_its_provenance() -> None:
    from c2srt.model import eval_transform
    from c2srt.miniworld.dataset import MiniWorldDataset
    from c2srt.model import create_model

    torch.manual_seed(0)
    model = create_model(ModelCfg(backbone="test-tiny", pretrained=None, distill=False, head=HeadCfg(name="mkt", topk=4)), teacher=False)
    ds = MiniWorldDataset("train", n=12, transform=eval_transform(model))
    cal = fit_calibrator(model, ds, batch_size=5, provenance={"data": "miniworld train 12"})
    seen = [n for n, s in zip(ds.label_names, ds.seen_mask.tolist()) if s]
    rec = cal.provenance
    assert rec["labels"] == seen and rec["images"] == 12 and rec["data"] == "miniworld train 12"
    assert rec["fit"]["entries"] == 12 * len(seen) and "mkt head" in rec["decision_score"] and rec["date"]


# ------------------------------------------------------------------------------ c2srt calibrate
def test_calibrate_verb_rewrites_the_checkpoint_atomically(tiny_checkpoint: Path, coco8: Path, tmp_path: Path, capsys) -> None:
    from c2srt.cli import main

    path = tmp_path / "model.safetensors"
    shutil.copy(tiny_checkpoint, path)
    weights = _tensors(path)
    argv = ["calibrate", "--checkpoint", str(path), "--config", str(TINY), f"data.root={coco8}", "eval.batch_size=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "calibrator (platt) fitted on 3 images" in out  # coco8 train: 4 images, one without a seen label and f"written to {path}" in out
    cal = load_calibrator(path)
    assert cal.provenance["data"]["name"] == "coco" and cal.provenance["split"] == "train" and cal.provenance["heldout"] is None
    after = _tensors(path)
    assert all(torch.equal(after[k], v) for k, v in weights.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temporary file left
    # --out leaves the checkpoint as it is
    other = tmp_path / "calibrated" / "m.safetensors"
    assert main([*argv, "calibration.method=isotonic", "--out", str(other)]) == 0
    assert load_calibrator(other).method == "isotonic" and load_calibrator(path).method == "platt"


def test_calibrate_verb_refuses_the_training_images_themselves(tiny_checkpoint: Path, coco8: Path, tmp_path: Path, capsys) -> None:
    from c2srt.cli import main

    path = tmp_path / "model.safetensors"
    shutil.copy(tiny_checkpoint, path)
    before = path.read_bytes()
    capsys.readouterr()
    rc = main(["calibrate", "--checkpoint", str(path), "data.name=coco", f"data.root={coco8}", "calibration.holdout=0"])
    err = capsys.readouterr().err
    assert rc == 2 and "calibration.holdout is 0" in err and "Traceback" not in err
    assert path.read_bytes() == before
    # with a held-out part of its own training listing, the checkpoint's own data are used
    rc = main(["calibrate", "--checkpoint", str(path), "data.name=coco", f"data.root={coco8}", "calibration.holdout=2", "eval.batch_size=2"])
    assert rc == 0
    cal = load_calibrator(path)
    assert cal.provenance["images"] == 2 and cal.provenance["heldout"] == {"holdout": 2.0, "max_holdout": 1000, "seed": 0}


def test_calibrate_function_with_the_checkpoints_own_config(tiny_checkpoint: Path, coco8: Path, tmp_path: Path) -> None:
    import dataclasses

    info = read_checkpoint_info(tiny_checkpoint)
    cfg = dataclasses.replace(info.cfg, data=dataclasses.replace(info.cfg.data, name="coco", root=str(coco8), options={"unseen": ["bus"]}))
    out, cal = calibrate_checkpoint(tiny_checkpoint, cfg, out=tmp_path / "c.safetensors", batch_size=4)
    assert out == tmp_path / "c.safetensors" and cal.provenance["images"] == 4 and "bus" not in cal.provenance["labels"]
    assert read_checkpoint_info(tiny_checkpoint).calibration is None  # the fixture is untouched
