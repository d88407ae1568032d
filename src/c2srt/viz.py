"""Pictures of results people would rather look at than read: curves and selected regions.

matplotlib is imported inside each function (Agg backend), so importing c2srt stays cheap.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    from .io import atomic_path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=out.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return out


def plot_curves(metrics_csv: str | Path, out: str | Path, *, title: str | None = None) -> Path:
    """Training loss and validation figures from a Lightning CSVLogger file, as one PNG.

    Raises:
        FileNotFoundError: no metrics file. ValueError: it holds nothing to plot.
    """
    path = Path(metrics_csv)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        step = row.get("step")
        if not step:
            continue
        for key, value in row.items():
            if key in ("step", "epoch") or not value:
                continue
            if key.startswith("train/loss") or key.endswith("mAP"):
                series.setdefault(key, []).append((float(step), float(value)))
    if not series:
        raise ValueError(f"{path}: no loss or mAP columns to plot")
    plt = _pyplot()
    losses = {k: v for k, v in series.items() if k.startswith("train/")}
    maps = {k: v for k, v in series.items() if not k.startswith("train/")}
    fig, axes = plt.subplots(1, 2 if maps else 1, figsize=(10 if maps else 5, 3.6), squeeze=False)
    for key, pts in sorted(losses.items()):
        xs, ys = zip(*pts)
        axes[0, 0].plot(xs, ys, label=key.split("/", 1)[1])
    axes[0, 0].set(xlabel="step", ylabel="loss", title="training loss")
    axes[0, 0].legend(fontsize=8)
    if maps:
        for key, pts in sorted(maps.items()):
            xs, ys = zip(*pts)
            axes[0, 1].plot(xs, ys, marker="o", label=key.split("/", 1)[-1])
        axes[0, 1].set(xlabel="step", ylabel="mAP (%)", title="validation mAP")
        axes[0, 1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def plot_multi_curves(runs: dict[str, str | Path], out: str | Path, *, metric: str = "val/zsl/mAP") -> Path:
    """One curve per run (e.g. the ablations of the demo) of the loss and a validation metric."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, csv_path in runs.items():
        with Path(csv_path).open() as f:
            rows = list(csv.DictReader(f))
        loss = [(float(r["step"]), float(r["train/loss"])) for r in rows if r.get("train/loss")]
        val = [(float(r["step"]), float(r[metric])) for r in rows if r.get(metric)]
        if loss:
            axes[0].plot(*zip(*loss), label=name)
        if val:
            axes[1].plot(*zip(*val), marker="o", label=name)
    axes[0].set(xlabel="step", ylabel="loss", title="training loss")
    axes[1].set(xlabel="step", ylabel=metric, title=metric)
    for ax in axes:
        ax.legend(fontsize=7)
    return _save(fig, out)


def region_heatmaps(
    image: np.ndarray,
    weights: np.ndarray,
    labels: Sequence[str],
    scores: Sequence[float],
    counts: Sequence[int],
    out: str | Path,
    *,
    grid: tuple[int, int] | None = None,
    title: str | None = None,
) -> Path:
    """One panel per label: the image with its selected patches as a heatmap, and the patch count.

    Args:
        image: [H, W, 3] uint8, as the model saw it (after resize/crop).
        weights: [N, L] patch weights for the L labels drawn (zero outside the selected patches).
        labels, scores, counts: per drawn label.
        grid: patch grid (rows, cols); default: square.
    """
    plt = _pyplot()
    n_patches, n_labels = weights.shape
    if grid is None:
        side = int(round(math.sqrt(n_patches)))
        if side * side != n_patches:
            raise ValueError(f"cannot infer a square patch grid from {n_patches} patches; pass grid=")
        grid = (side, side)
    cols = min(4, n_labels + 1)
    rows = math.ceil((n_labels + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    h, w = image.shape[:2]
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("input", fontsize=9)
    for i in range(n_labels):
        ax = axes.flat[i + 1]
        heat = weights[:, i].reshape(grid)
        heat = heat / heat.max() if heat.max() > 0 else heat
        ax.imshow(image)
        ax.imshow(heat, cmap="inferno", alpha=0.55, extent=(0, w, h, 0), interpolation="nearest")
        ax.set_title(f"{labels[i]}\nscore {scores[i]:.3f}, {int(counts[i])} patches", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, out)
