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
            axes[0, 1].plot(xs, _as_percent(ys), marker="o", label=key.split("/", 1)[-1])
        axes[0, 1].set(xlabel="step", ylabel="mAP (%)", title="validation mAP")
        axes[0, 1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def _as_percent(values: Sequence[float]) -> list[float]:
    """Evaluator figures are fractions in [0, 1]; curves show percent (values above 1 are kept)."""
    return [100.0 * v for v in values] if values and max(values) <= 1.0 else list(values)


def plot_multi_curves(
    runs: dict[str, str | Path], out: str | Path, *, metric: str | Sequence[str] = ("val/zsl/mAP", "val/gzsl/mAP")
) -> Path:
    """The training loss and validation metrics of several runs (e.g. the demo's ablations), one PNG.

    Args:
        runs: name -> Lightning CSVLogger `metrics.csv`.
        out: PNG to write.
        metric: one or more logged columns, one panel each (fractions are drawn in percent).

    Raises:
        ValueError: no run has anything to plot.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    data: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, csv_path in runs.items():
        with Path(csv_path).open() as f:
            rows = list(csv.DictReader(f))
        data[name] = {
            key: [(float(r["step"]), float(r[key])) for r in rows if r.get(key) and r.get("step")]
            for key in ["train/loss", *metrics]
        }
    if not any(pts for series in data.values() for pts in series.values()):
        raise ValueError(f"nothing to plot: no train/loss or {metrics} in {list(runs.values())}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(4.2 * (1 + len(metrics)), 3.6), squeeze=False)
    for name, series in data.items():
        if series["train/loss"]:
            axes[0, 0].plot(*zip(*series["train/loss"]), label=name)
        for ax, key in zip(axes[0, 1:], metrics):
            if series[key]:
                xs, ys = zip(*series[key])
                ax.plot(xs, _as_percent(ys), marker="o", label=name)
    axes[0, 0].set(xlabel="step", ylabel="loss", title="training loss (seen labels)")
    for ax, key in zip(axes[0, 1:], metrics):
        block, _, name = key.removeprefix("val/").partition("/")
        ax.set(xlabel="step", ylabel=f"{name} (%)", title=f"validation {block.upper()} {name}")
    for ax in axes.flat:
        ax.legend(fontsize=7)
    return _save(fig, out)


EXPLAIN_MAX_SIDE = 384  # px: explanation PNGs draw the photo at most this large
UNSELECTED_DIM = 0.55  # opacity of the black veil over patches the head did not keep
SELECTED_ALPHA = 0.6  # opacity of the colour over the kept patches


def _patch_count_text(n: int) -> str:
    return f"{n} patch" if n == 1 else f"{n} patches"


def _patch_overlay(weights: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """RGBA [gh, gw, 4]: kept patches coloured by weight (brightest = most weight), the rest darkened."""
    import matplotlib

    w = np.asarray(weights, dtype=float).reshape(grid)  # [N] -> [gh, gw]
    rgba = np.zeros((*grid, 4))
    kept = w > 0
    rgba[~kept] = (0.0, 0.0, 0.0, UNSELECTED_DIM)
    if kept.any():
        colours = matplotlib.colormaps["inferno"](0.35 + 0.65 * w / w.max())  # [gh, gw, 4]
        rgba[kept] = colours[kept]
        rgba[kept, 3] = SELECTED_ALPHA
    return rgba


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
    crop_box: tuple[float, float, float, float] | None = None,
) -> Path:
    """One panel per label: the photo with the patches the head selected as a heatmap, and their count.

    Patches the head kept for a label are coloured by their weight (brightest = most weight) and
    outlined; the rest of the picture is darkened. The first panel is the photo itself, with the
    region the model saw outlined when it is not the whole photo.

    Args:
        image: [H, W, 3] uint8, the photo (or the model input).
        weights: [N, L] patch weights for the L labels drawn (zero outside the selected patches).
        labels, scores, counts: per drawn label.
        out: PNG to write (atomically; parent folders are created).
        grid: patch grid (rows, cols); default: square.
        title: figure title (e.g. the file name).
        crop_box: (left, top, right, bottom) in `image` pixels: the region the model saw, which the
            patch grid covers. Default: the whole image.

    Returns:
        `out`.

    Raises:
        ValueError: mismatched lengths, or a patch count that is not a square without `grid`.
    """
    import matplotlib.patches as mpatches

    plt = _pyplot()
    if weights.ndim != 2:
        raise ValueError(f"weights must be [N, L], got shape {tuple(weights.shape)}")
    n_patches, n_labels = weights.shape
    if not (len(labels) == len(scores) == len(counts) == n_labels):
        raise ValueError(
            f"{n_labels} weight columns but {len(labels)} labels, {len(scores)} scores, {len(counts)} counts"
        )
    if grid is None:
        side = int(round(math.sqrt(n_patches)))
        if side * side != n_patches:
            raise ValueError(f"cannot infer a square patch grid from {n_patches} patches; pass grid=")
        grid = (side, side)
    elif grid[0] * grid[1] != n_patches:
        raise ValueError(f"grid {grid} does not hold {n_patches} patches")
    h, w = image.shape[:2]
    left, top, right, bottom = crop_box if crop_box is not None else (0.0, 0.0, float(w), float(h))
    scale = min(1.0, EXPLAIN_MAX_SIDE / max(h, w))
    if scale < 1.0:  # draw a smaller copy: the PNG stays light and quick to write
        from PIL import Image

        small = Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        image = np.asarray(small)
        h, w = image.shape[:2]
        left, top, right, bottom = (v * scale for v in (left, top, right, bottom))
    cols = min(4, n_labels + 1)
    rows = math.ceil((n_labels + 1) / cols)
    panel_w = 3.0
    panel_h = min(4.5, max(1.5, panel_w * h / w)) + 0.5  # room for the two-line title
    fig, axes = plt.subplots(rows, cols, figsize=(panel_w * cols, panel_h * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    whole = (left, top, right, bottom) == (0.0, 0.0, float(w), float(h))

    def veil_outside(ax) -> None:
        """Darken the parts of the photo the model did not see (outside the crop)."""
        for x0, y0, x1, y1 in ((0, 0, w, top), (0, bottom, w, h), (0, top, left, bottom), (right, top, w, bottom)):
            if x1 > x0 and y1 > y0:
                ax.add_patch(mpatches.Rectangle((x0, y0), x1 - x0, y1 - y0, color="black", alpha=UNSELECTED_DIM, lw=0))

    ax0 = axes[0, 0]
    ax0.imshow(image, interpolation="nearest")
    if not whole:
        ax0.add_patch(mpatches.Rectangle((left, top), right - left, bottom - top, fill=False, ec="white", ls="--", lw=1))
    ax0.set_title("input" if whole else "input (dashed: model view)", fontsize=9)
    ph, pw = (bottom - top) / grid[0], (right - left) / grid[1]  # patch size in drawn pixels
    for i in range(n_labels):
        ax = axes.flat[i + 1]
        ax.imshow(image, interpolation="nearest")
        ax.imshow(
            _patch_overlay(weights[:, i], grid), extent=(left, right, bottom, top), interpolation="nearest"
        )
        if not whole:
            veil_outside(ax)
        for idx in np.flatnonzero(weights[:, i] > 0):  # outline each selected patch
            r, c = divmod(int(idx), grid[1])
            ax.add_patch(
                mpatches.Rectangle((left + c * pw, top + r * ph), pw, ph, fill=False, ec="cyan", lw=0.8)
            )
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"{labels[i]}\nscore {scores[i]:.3f}, {_patch_count_text(int(counts[i]))}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, out)
