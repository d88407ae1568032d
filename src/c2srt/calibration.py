r"""Calibrated tag decisions: a model's decision scores mapped to P(label present).

The fused logits rank the labels of one image; a decision needs a number that means the same for
every label and every vocabulary. `C2SRT.decision_scores` gives a per-(image, label) cosine,
normalised across nothing; a `Calibrator` maps it to a probability:

- "platt" (the default): :math:`P(y_{bc} = 1) = \sigma(a\, s_{bc} + b)`, :math:`a > 0`, fitted by
  maximum likelihood with Platt's smoothed targets (Platt 1999; the Newton method with
  back-tracking of Lin, Lin & Weng 2007);
- "isotonic": a non-decreasing step function of :math:`s` (pool-adjacent-violators), linearly
  interpolated between the steps' ends and clipped to :math:`[1/(n_+ + 2), (n_+ + 1)/(n_+ + 2)]`.

Both are one map for every label, fitted on the seen labels of held-out annotated images, so they
apply unchanged to labels never seen (why this design, and how far it transfers to unseen labels,
is measured in docs/REPRODUCE.md, "Tag decisions"). The calibrator is c2srt's own: neither MKT nor
C2SRT defines one.

Also here: the held-out split of a training listing (`holdout_split`, `split_dataset`, from
`CalibrationCfg`), scoring a dataset (`decision_scores_of`), fitting a calibrator for a model on
a dataset (`fit_calibrator`) and re-fitting the one of a checkpoint (`calibrate_checkpoint`,
`c2srt calibrate`). The calibrator is stored inside `model.safetensors` (`checkpoint.write_calibrator`).
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .choices import CalibrationMethod
from .constants import IGNORE_LABEL, POSITIVE
from .data.base import DatasetPart
from .version import __version__

if TYPE_CHECKING:
    from .config import CalibrationCfg, Cfg
    from .graph import CategoryGraph
    from .model import C2SRT

_logger = logging.getLogger(__name__)

METHODS = tuple(m.value for m in CalibrationMethod)  # "platt", "isotonic"
PLATT_MAX_ITER = 100  # Newton steps
PLATT_TOL = 1e-10  # stop when the gradient's largest entry is below this
PLATT_MIN_STEP = 1e-10  # back-tracking gives up below this step
PLATT_SIGMA = 1e-12  # added to the Hessian's diagonal (Lin, Lin & Weng 2007)


# ------------------------------------------------------------------------------ fitting kernels
def _entries(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """Annotated (score, is-positive) entries as flat float64 / bool arrays; unknown (0) left out."""
    from .metrics import check_pair

    s = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores)
    y = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets)
    if s.ndim == 1:
        s, y = s[:, None], y[:, None] if y.ndim == 1 else y
    s, y = check_pair(s, y)
    mask = y != IGNORE_LABEL
    return s[mask].astype(np.float64), y[mask] == POSITIVE


def _check_fit_data(scores: np.ndarray, hit: np.ndarray) -> None:
    if scores.size == 0:
        raise ValueError("no annotated (image, label) entry to fit a calibrator on")
    if hit.all() or not hit.any():
        raise ValueError(f"the calibration data needs positives and negatives; got {int(hit.sum())} of {hit.size} positive")


def _smoothed_targets(hit: np.ndarray) -> np.ndarray:
    """Platt's targets: (n+ + 1)/(n+ + 2) for positives, 1/(n- + 2) for negatives (no infinite slope
    when the classes separate)."""
    n_pos = int(hit.sum())
    n_neg = hit.size - n_pos
    return np.where(hit, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))


def fit_platt(scores: np.ndarray, hit: np.ndarray) -> tuple[float, float]:
    """(a, b) of sigma(a s + b), a >= 0, maximum likelihood on Platt's smoothed targets.

    Newton's method with back-tracking line search (Lin, Lin & Weng, "A note on Platt's
    probabilistic outputs for support vector machines", 2007), in float64. The loss is convex, so
    where its unconstrained minimum has a <= 0 (scores that do not rise with the labels: an
    untrained model, or too few images) the constrained one is a = 0, a flat map at the smoothed
    base rate; that is logged as a warning.

    Raises:
        ValueError: no entry, or only one class.
    """
    _check_fit_data(scores, hit)
    t = _smoothed_targets(hit)
    base = math.log(t.mean() / (1.0 - t.mean()))  # the best b when a = 0
    a, b = 0.0, base

    def loss(a: float, b: float) -> float:
        f = a * scores + b
        return float(np.sum(np.logaddexp(0.0, f) - t * f))  # cross-entropy with targets t

    value = loss(a, b)
    for _ in range(PLATT_MAX_ITER):
        p = 1.0 / (1.0 + np.exp(-(a * scores + b)))
        d = p - t  # dL/df
        g = np.array([np.dot(d, scores), d.sum()])
        if np.abs(g).max() < PLATT_TOL * max(1.0, scores.size):
            break
        w = p * (1.0 - p)
        h = np.array([[np.dot(w, scores * scores) + PLATT_SIGMA, np.dot(w, scores)], [np.dot(w, scores), w.sum() + PLATT_SIGMA]])
        step = -np.linalg.solve(h, g)
        size = 1.0
        while size >= PLATT_MIN_STEP:
            na, nb = a + size * step[0], b + size * step[1]
            new = loss(na, nb)
            if new < value + 1e-4 * size * float(np.dot(g, step)):
                a, b, value = na, nb, new
                break
            size /= 2.0
        else:
            break  # no further decrease: converged as far as float64 allows
    if not a > 0:
        _logger.warning(
            "the decision scores do not rise with the labels on the calibration data (fitted slope %.3g): the "
            "calibrator is flat, every probability the base rate %.3f (is the model trained? are the labels right?)",
            a,
            1.0 / (1.0 + math.exp(-base)),
        )
        return 0.0, base
    return a, b


def fit_isotonic(scores: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x [M], y [M]) of a non-decreasing map: pool-adjacent-violators on the entries sorted
    by score (tied scores pooled first), each block giving two knots (its lowest and highest
    score), the values clipped to Platt's smoothed targets so no probability is exactly 0 or 1.

    Raises:
        ValueError: no entry, or only one class.
    """
    _check_fit_data(scores, hit)
    order = np.argsort(scores, kind="stable")
    x, y = scores[order], hit[order].astype(np.float64)
    ux, start = np.unique(x, return_index=True)  # tied scores form one block from the start
    count = np.diff(np.append(start, x.size)).astype(np.float64)
    total = np.add.reduceat(y, start)
    # pool adjacent violators over the blocks: a stack of (sum, count, lowest x, highest x)
    sums: list[float] = []
    counts: list[float] = []
    lows: list[float] = []
    highs: list[float] = []
    for xi, si, ci in zip(ux.tolist(), total.tolist(), count.tolist()):
        sums.append(si)
        counts.append(ci)
        lows.append(xi)
        highs.append(xi)
        while len(sums) > 1 and sums[-2] / counts[-2] >= sums[-1] / counts[-1]:
            s, c, h = sums.pop(), counts.pop(), highs.pop()
            lows.pop()
            sums[-1] += s
            counts[-1] += c
            highs[-1] = h
    value = np.asarray(sums) / np.asarray(counts)
    n_pos = float(hit.sum())
    n_neg = float(hit.size - hit.sum())
    lo, hi = 1.0 / (n_neg + 2.0), (n_pos + 1.0) / (n_pos + 2.0)
    value = np.clip(value, lo, hi)
    knots_x = np.stack([np.asarray(lows), np.asarray(highs)], 1).reshape(-1)  # [2M]
    knots_y = np.repeat(value, 2)
    keep = np.append(True, knots_x[1:] != knots_x[:-1])  # a one-score block gives one knot
    return knots_x[keep], knots_y[keep]


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of the knots (xp increasing, fp), constant outside them."""
    if xp.numel() == 1:
        return fp.expand_as(x).clone()
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)  # xp[i-1] < x <= xp[i]
    x0, x1, y0, y1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    w = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return y0 + w * (y1 - y0)


# ------------------------------------------------------------------------------ the calibrator
class Calibrator:
    """A monotone map from decision scores to P(label present), the same for every label.

    Args:
        method: "platt" or "isotonic" (see the module docstring).
        params: its tensors: "platt": `a`, `b` (scalars); "isotonic": `x`, `y` (knots [M]).
        provenance: where it comes from (data, size, seed, date, fitted labels, fit figures).

    Example:
        >>> cal = Calibrator.fit(torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([-1, -1, 1, 1]))
        >>> bool(cal(torch.tensor([0.35])) > cal(torch.tensor([0.15])))
        True
    """

    def __init__(self, method: str, params: dict[str, torch.Tensor], provenance: dict[str, Any] | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
        need = {"platt": ("a", "b"), "isotonic": ("x", "y")}[method]
        missing = [k for k in need if k not in params]
        if missing:
            raise ValueError(f"{method} calibrator: missing tensor(s) {missing}")
        self.method = method
        self.params = {k: torch.as_tensor(params[k], dtype=torch.float64).detach().cpu().clone() for k in need}
        if method == "platt" and not float(self.params["a"]) >= 0:
            raise ValueError(f"platt calibrator: the slope a must be >= 0 (a non-decreasing map), got {float(self.params['a'])}")
        if method == "isotonic":
            x, y = self.params["x"], self.params["y"]
            if x.ndim != 1 or x.shape != y.shape or x.numel() == 0:
                raise ValueError(f"isotonic calibrator: knots x {tuple(x.shape)} and y {tuple(y.shape)} must be 1-D of one length")
            if (x[1:] <= x[:-1]).any() or (y[1:] < y[:-1]).any() or y.min() < 0 or y.max() > 1:
                raise ValueError("isotonic calibrator: knots must have increasing x and non-decreasing y in [0, 1]")
        self.provenance = dict(provenance or {})

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, scores: Any, targets: Any, *, method: str = "platt", provenance: dict[str, Any] | None = None) -> "Calibrator":
        """Fit on decision scores and their labels.

        Args:
            scores: [M, K] (or [E]) decision scores.
            targets: the same shape, in {+1, -1, 0}; unknown entries (0) are left out.
            method: "platt" or "isotonic".
            provenance: recorded with the calibrator; the fit's figures (entries, positives,
                ECE, Brier, log loss on the fitted data) are added under "fit".

        Raises:
            ValueError: an unknown method, mismatched shapes, bad labels, no positive or no
                negative.
        """
        if method not in METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
        s, hit = _entries(scores, targets)
        if method == "platt":
            a, b = fit_platt(s, hit)
            cal = cls(method, {"a": torch.tensor(a), "b": torch.tensor(b)}, provenance)
        else:
            x, y = fit_isotonic(s, hit)
            cal = cls(method, {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, provenance)
        cal.provenance["fit"] = {**cal.provenance.get("fit", {}), **fit_figures(cal(torch.from_numpy(s)).numpy(), hit)}
        return cal

    # ------------------------------------------------------------------ use
    def __call__(self, scores: Any) -> Any:
        """Probabilities of the same shape (and type: tensor or numpy) as the decision `scores`."""
        is_numpy = not isinstance(scores, torch.Tensor)
        s = torch.as_tensor(np.asarray(scores) if is_numpy else scores)
        dtype = s.dtype if s.is_floating_point() else torch.float32
        x = s.detach().to(torch.float64)
        if self.method == "platt":
            a, b = (self.params[k].to(x.device) for k in ("a", "b"))
            p = torch.sigmoid(a * x + b)
        else:
            p = _interp(x, self.params["x"].to(x.device), self.params["y"].to(x.device))
        p = p.to(dtype)
        return p.numpy() if is_numpy else p

    # ------------------------------------------------------------------ storage
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Its tensors (stored as `calibrator.<name>` in a checkpoint)."""
        return {k: v.clone() for k, v in self.params.items()}

    def metadata(self) -> dict[str, Any]:
        """Method and provenance, JSON-serialisable (stored as the checkpoint's `calibration` entry)."""
        return {"method": self.method, "provenance": self.provenance}

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], *, where: str = "calibrator") -> "Calibrator":
        """Rebuild from `state_dict()` and `metadata()` (as read from a checkpoint).

        Raises:
            ValueError: an unknown method or missing / malformed tensors, naming `where`.
        """
        try:
            return cls(str(metadata.get("method")), tensors, metadata.get("provenance") or {})
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e

    def __repr__(self) -> str:
        if self.method == "platt":
            detail = f"a={float(self.params['a']):.4g}, b={float(self.params['b']):.4g}"
        else:
            detail = f"knots={self.params['x'].numel()}"
        n = self.provenance.get("images")
        return f"Calibrator(method={self.method!r}, {detail}" + (f", images={n})" if n is not None else ")")


def fit_figures(probs: np.ndarray, hit: np.ndarray) -> dict[str, float]:
    """Entries, positives, ECE, Brier score and log loss of probabilities on their own data."""
    from .metrics import brier_score, expected_calibration_error

    y = np.where(hit, POSITIVE, -1)[:, None]
    p = np.clip(probs.astype(np.float64), 1e-12, 1 - 1e-12)
    return {
        "entries": int(hit.size),
        "positives": int(hit.sum()),
        "ece": expected_calibration_error(probs[:, None], y),
        "brier": brier_score(probs[:, None], y),
        "log_loss": float(-np.mean(np.where(hit, np.log(p), np.log1p(-p)))),
    }


# ------------------------------------------------------------------------------ held-out split
def holdout_count(n: int, holdout: float, max_holdout: int | None = None) -> int:
    """How many of `n` images `calibration.holdout` holds out: a fraction in (0, 1) (rounded, at
    least 1) or a number of images (>= 1), at most `max_holdout`; 0 for none.

    Raises:
        ValueError: a negative or non-integer count, or nothing left to train on (names the key).
    """
    if holdout < 0 or (holdout >= 1 and holdout != int(holdout)):
        raise ValueError(f"calibration.holdout: {holdout} must be 0, a fraction in (0, 1) or a whole number of images")
    if holdout == 0:
        return 0
    h = max(1, int(round(n * holdout))) if holdout < 1 else int(holdout)
    if max_holdout is not None:
        h = min(h, int(max_holdout))
    if h >= n:
        raise ValueError(f"calibration.holdout: holding out {h} of {n} images leaves none to train on")
    return h


def holdout_split(n: int, holdout: float, *, seed: int, max_holdout: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..n-1 into (train, held-out), deterministically from `seed`.

    The held-out images are the first `holdout_count(n, ...)` of a seeded permutation
    (`torch.Generator`, so the split is the same on every machine and torch version that keeps
    `randperm`'s stream); both parts are returned sorted.

    Returns:
        (train indices, held-out indices), int64 arrays.
    """
    h = holdout_count(n, holdout, max_holdout)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).numpy()
    return np.sort(perm[h:]), np.sort(perm[:h])


def split_dataset(dataset: Any, cfg: "CalibrationCfg") -> tuple[DatasetPart, DatasetPart]:
    """(training part, held-out part) of a training dataset as `cfg` (`calibration.*`) says."""
    train, held = holdout_split(len(dataset), cfg.holdout, seed=cfg.seed, max_holdout=cfg.max_holdout)
    return DatasetPart(dataset, train), DatasetPart(dataset, held)


# ------------------------------------------------------------------------------ scoring and fitting
def scoring_graph(model: "C2SRT", names: Sequence[str], graph: "CategoryGraph | None", *, zero_shot: bool = False) -> "CategoryGraph | None":
    """The graph a vocabulary is scored with: with IST, `graph` extended to the labels it lacks by
    the one rule of inference (`model.vocabulary_graph`, also `c2srt predict`'s); else None."""
    if zero_shot or model.ist is None:
        return None
    from .model import vocabulary_graph

    return vocabulary_graph(model, names, graph)


def decision_scores_of(
    model: "C2SRT",
    dataset: Any,
    *,
    graph: "CategoryGraph | None" = None,
    batch_size: int = 64,
    num_workers: int = 0,
    zero_shot: bool = False,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decision scores and targets of every image of `dataset`, over its whole vocabulary, through
    the one evaluation loop (`evaluate.run_evaluation`, decision scores only).

    Args:
        device: where to score (default: where the model is).

    Returns:
        (scores float32 [M, K], targets int8 [M, K] in {+1, -1, 0}).

    Raises:
        ValueError: the dataset has no image.
    """
    from .evaluate import run_evaluation

    if len(dataset) == 0:
        raise ValueError("the calibration data has no image")
    device = next(model.parameters()).device if device is None else device
    result = run_evaluation(
        model, dataset, graph=scoring_graph(model, list(dataset.label_names), graph, zero_shot=zero_shot), zero_shot=zero_shot,
        batch_size=batch_size, workers=num_workers, device=device, evaluate=False, decision=True, split="calibration",
    )  # fmt: skip
    assert result.decision is not None and result.targets is not None
    if result.decision.shape[0] == 0:
        raise ValueError("the calibration data has no readable image")
    return result.decision, result.targets


def fit_calibrator(
    model: "C2SRT",
    dataset: Any,
    *,
    method: str = "platt",
    graph: "CategoryGraph | None" = None,
    labels: str = "seen",
    batch_size: int = 64,
    num_workers: int = 0,
    zero_shot: bool = False,
    provenance: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
) -> Calibrator:
    """Score `dataset` with `model` and fit a calibrator on its annotated entries.

    Args:
        model: a C2SRT model.
        dataset: annotated images (the dataset contract: samples with `image`, `target`;
            `label_names`, `seen_mask`), e.g. the held-out part of the training listing
            (`split_dataset`) or a user's own labelled photos.
        method: "platt" or "isotonic".
        graph: the category graph (IST models; extended to labels it lacks).
        labels: "seen" (the dataset's seen labels: the ones a training run may hold out images
            of) or "all".
        batch_size, num_workers: the data loader's.
        zero_shot: calibrate CLIP's cos(g, t) instead of the heads.
        provenance: recorded with the calibrator (data listing, split, seed, ...); the number of
            images, the fitted labels, the date and the c2srt version are added.
        device: where to score (default: where the model is).

    Raises:
        ValueError: no image, no annotated positive or negative among the fitted labels, or
            `labels` not "seen" / "all".
    """
    if labels not in ("seen", "all"):
        raise ValueError(f"labels must be 'seen' or 'all', got {labels!r}")
    t0 = time.perf_counter()
    scores, targets = decision_scores_of(
        model, dataset, graph=graph, batch_size=batch_size, num_workers=num_workers, zero_shot=zero_shot, device=device
    )
    names = list(dataset.label_names)
    cols = np.asarray(dataset.seen_mask, dtype=bool) if labels == "seen" else np.ones(len(names), dtype=bool)
    if not cols.any():
        raise ValueError("the calibration data has no seen label (labels='seen'); use labels='all'")
    record = {
        **(provenance or {}),
        "images": int(scores.shape[0]),
        "labels": [n for n, c in zip(names, cols) if c],
        "decision_score": decision_score_name(model, zero_shot=zero_shot),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "c2srt_version": __version__,
    }
    cal = Calibrator.fit(scores[:, cols], targets[:, cols], method=method, provenance=record)
    cal.provenance["seconds"] = round(time.perf_counter() - t0, 3)  # scoring the images and fitting
    _logger.debug("calibrator (%s) fitted on %d images, %d labels: %s", method, scores.shape[0], int(cols.sum()), _fit_line(cal))
    return cal


def decision_score_name(model: "C2SRT", *, zero_shot: bool = False) -> str:
    """What the decision score of `model` is, in words (recorded in the calibrator's provenance)."""
    if zero_shot:
        return "cos(g, t): CLIP zero-shot"
    if model.ist is not None:
        return f"cos of IST {model.cfg.ist.mode} mode (its logits over e^s)"
    if model.scorer is not None:
        return "cos(f_img, t): cosine scoring (its logits over e^s)"
    return f"cos(f_img, t), f_img = (f_L + g)/2 of the {model.cfg.head.name} head"


def _fit_line(cal: Calibrator) -> str:
    fit = cal.provenance.get("fit", {})
    return f"{fit.get('entries', 0)} entries, {fit.get('positives', 0)} positive, ECE {fit.get('ece', float('nan')):.3f}, Brier {fit.get('brier', float('nan')):.3f}"


# ------------------------------------------------------------------------------ checkpoints
def load_calibrator(path: str | Path) -> Calibrator | None:
    """The calibrator stored in a checkpoint, or None (logged: the model then ranks only).

    Raises:
        ValueError: a calibrator that is stored but malformed (naming the file).
    """
    from .checkpoint import read_calibrator

    found = read_calibrator(path)
    if found is None:
        _logger.info("%s has no calibrator: labels are ranked, not decided (`c2srt calibrate` fits one)", path)
        return None
    tensors, meta = found
    return Calibrator.from_state_dict(tensors, meta, where=f"{path}: calibrator")


def calibrate_checkpoint(
    checkpoint: str | Path,
    cfg: "Cfg | None" = None,
    *,
    split: str = "train",
    heldout: bool | None = None,
    out: str | Path | None = None,
    method: str | None = None,
    batch_size: int | None = None,
) -> tuple[Path, Calibrator]:
    """Fit a calibrator for a checkpoint on annotated images and store it in the checkpoint.

    Args:
        checkpoint: a c2srt `model.safetensors`.
        cfg: the config whose `data` names the annotated listing (any dataset c2srt reads) and whose
            `calibration` gives the method; default: the checkpoint's own config.
        split: the split of `cfg.data` to read ("train" or "test").
        heldout: fit on the held-out part of the split only (`split_dataset` with
            `cfg.calibration`): the images a training run with that config left out. Default:
            when `cfg` is None (the checkpoint's own training data: the images it trained on
            would give over-confident probabilities). Otherwise the whole split is used.
        out: where to write the checkpoint with its calibrator (default: rewrite `checkpoint`;
            the weights stay bit-identical, the write is atomic).
        method: overrides `cfg.calibration.method`.
        batch_size: images per forward pass (default `cfg.eval.batch_size`).

    Returns:
        (the checkpoint written, the calibrator).

    Raises:
        ValueError: the checkpoint's own data without a held-out part (`calibration.holdout` 0),
            or what `fit_calibrator` raises.
    """
    from .checkpoint import load_checkpoint, write_calibrator
    from .data.base import build_dataset
    from .evaluate import device_for
    from .graph import CategoryGraph
    from .model import eval_transform

    model, info = load_checkpoint(checkpoint)
    own = cfg is None
    cfg = info.cfg if cfg is None else cfg
    heldout = own if heldout is None else heldout
    dataset = build_dataset(cfg.data, split, eval_transform(model))
    if heldout:
        c = cfg.calibration
        if holdout_count(len(dataset), c.holdout, c.max_holdout) == 0:
            raise ValueError(
                f"{checkpoint}: calibration.holdout is 0, so training held no image out; fitting on the images the "
                "model trained on would make it over-confident: give --config with an annotated listing of other images"
            )
        dataset = split_dataset(dataset, c)[1]
    graph = CategoryGraph.from_dict(info.graph, where=str(checkpoint)) if info.graph else None
    cal = fit_calibrator(
        model,
        dataset,
        method=method or cfg.calibration.method,
        graph=graph,
        batch_size=batch_size or cfg.eval.batch_size,
        num_workers=cfg.data.num_workers,
        provenance={**data_provenance(cfg, split, heldout=heldout), "checkpoint": Path(checkpoint).name},
        device=device_for(cfg.train.accelerator),
    )
    return write_calibrator(checkpoint, cal, out=out), cal


def data_provenance(cfg: "Cfg", split: str, *, heldout: bool) -> dict[str, Any]:
    """Where a calibrator's images come from, for its provenance: the listing of `cfg.data`, its
    split, and (`heldout`) the held-out part `cfg.calibration` draws."""
    c = cfg.calibration
    return {
        "data": {"name": cfg.data.name, "root": cfg.data.root, "options": dict(cfg.data.options or {})},
        "split": split,
        "heldout": {"holdout": c.holdout, "max_holdout": c.max_holdout, "seed": c.seed} if heldout else None,
    }
