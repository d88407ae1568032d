"""Pictures of results people would rather look at than read: curves and selected regions.

matplotlib is imported inside each function, so importing c2srt stays cheap, and pictures are
`matplotlib.figure.Figure` objects saved to files (`new_figure`, `save_picture`): no pyplot, no
backend switch, nothing global changes, so a notebook's own plotting is left as it was.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


PICTURE_DPI = 110  # resolution of every picture viz writes


def new_figure(**kwargs: Any) -> "Figure":
    """A matplotlib Figure made without pyplot (so without global state); `kwargs` as `Figure`'s (figsize, ...)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_picture(fig: "Figure", out: str | Path) -> Path:
    """Write a picture as viz writes them all (PICTURE_DPI, tight box), atomically (`io.save_figure`)."""
    from .io import save_figure

    return save_figure(fig, out, dpi=PICTURE_DPI, bbox_inches="tight")


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
    losses = {k: v for k, v in series.items() if k.startswith("train/")}
    maps = {k: v for k, v in series.items() if not k.startswith("train/")}
    fig = new_figure(figsize=(10 if maps else 5, 3.6))
    axes = fig.subplots(1, 2 if maps else 1, squeeze=False)
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
    return save_picture(fig, out)


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
    fig = new_figure(figsize=(4.2 * (1 + len(metrics)), 3.6))
    axes = fig.subplots(1, 1 + len(metrics), squeeze=False)
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
    return save_picture(fig, out)


EXPLAIN_MAX_SIDE = 384  # px: explanation PNGs draw the photo at most this large
SELECTED_ALPHA = 0.6  # opacity of the colour over the patches the head kept
UNSELECTED_DIM = 0.55  # opacity of the black veil over patches the head did not keep
OUTSIDE_DIM = 0.8  # opacity of the black veil over the parts of the photo the model did not see
HEAT_COLORMAP = "inferno"  # kept patches: darkest colour at the least weight, brightest at the most
HEAT_RANGE = (0.35, 1.0)  # part of the colour map used, so the least-weighted kept patch still shows
OUTLINE_RGB = (0, 255, 255)  # cyan outline around each kept patch
OUTLINE_FRACTION = 1 / 16  # outline thickness as a fraction of the patch side (at least 1 px)


def _patch_count_text(n: int) -> str:
    return f"{n} patch" if n == 1 else f"{n} patches"


def _square_grid(n_patches: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    """The patch grid (rows, cols): `grid` when given and consistent, else a square one.

    Raises:
        ValueError: `grid` does not hold `n_patches`, or no square does.
    """
    if grid is None:
        side = int(round(math.sqrt(n_patches)))
        if side * side != n_patches:
            raise ValueError(f"cannot infer a square patch grid from {n_patches} patches; pass grid=")
        return side, side
    if grid[0] * grid[1] != n_patches:
        raise ValueError(f"grid {grid} does not hold {n_patches} patches")
    return grid


def region_overlay(
    image: np.ndarray,
    weights: np.ndarray | None,
    *,
    crop_box: tuple[float, float, float, float] | None = None,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """The photo with one label's selected patches as a heatmap: the one region picture of c2srt.

    Inside `crop_box` (the square the model saw, which the patch grid covers) each patch the head
    kept (weight > 0) is tinted by its weight (`HEAT_COLORMAP`, brightest = most weight) and outlined
    in cyan; the patches it did not keep are darkened (`UNSELECTED_DIM`). Outside the crop the photo
    is darkened more (`OUTSIDE_DIM`). `explain` PNGs, the demo's pictures and the web page all draw
    with this function.

    Args:
        image: [H, W, 3] uint8, the photo.
        weights: [N] patch weights of one label, row-major over the grid (zero where not selected);
            None: no region weights (only the area outside the crop is darkened).
        crop_box: (left, top, right, bottom) in `image` pixels; default: the whole image.
        grid: patch grid (rows, cols); default: square.

    Returns:
        [H, W, 3] uint8.

    Raises:
        ValueError: `image` is not [H, W, 3], or the weights do not fit the grid.

    Example:
        >>> region_overlay(np.zeros((8, 8, 3), np.uint8), np.array([1.0, 0, 0, 0])).shape
        (8, 8, 3)
    """
    import matplotlib

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {tuple(img.shape)}")
    h, w = img.shape[:2]
    left, top, right, bottom = (round(v) for v in (crop_box or (0, 0, w, h)))
    left, top, right, bottom = max(0, left), max(0, top), min(w, right), min(h, bottom)
    px = img.astype(np.float32)
    out = px * (1.0 - OUTSIDE_DIM)
    crop = px[top:bottom, left:right]  # [h', w', 3]
    if weights is None or crop.size == 0:
        out[top:bottom, left:right] = crop
        return out.round().clip(0, 255).astype(np.uint8)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    gh, gw = _square_grid(weights.size, grid)
    ch, cw = crop.shape[:2]
    # each pixel of the crop -> its patch row and column, and where that patch starts and ends
    row_edges = np.floor(np.arange(gh + 1) * ch / gh).astype(int)  # [gh + 1]
    col_edges = np.floor(np.arange(gw + 1) * cw / gw).astype(int)  # [gw + 1]
    rows = np.searchsorted(row_edges, np.arange(ch), side="right") - 1  # [h']
    cols = np.searchsorted(col_edges, np.arange(cw), side="right") - 1  # [w']
    wmap = weights.reshape(gh, gw)[rows[:, None], cols[None, :]]  # [gh, gw] -> [h', w']
    kept = wmap > 0
    lo, hi = HEAT_RANGE
    top_weight = weights.max() if weights.max() > 0 else 1.0
    colour = matplotlib.colormaps[HEAT_COLORMAP](lo + (hi - lo) * np.where(kept, wmap, 0) / top_weight)[..., :3] * 255.0
    lit = crop * (1.0 - SELECTED_ALPHA) + colour * SELECTED_ALPHA
    shown = np.where(kept[..., None], lit, crop * (1.0 - UNSELECTED_DIM))
    t = max(1, round(min(ch / gh, cw / gw) * OUTLINE_FRACTION))  # outline thickness, px
    y, x = np.arange(ch), np.arange(cw)
    edge_y = (y - row_edges[rows] < t) | (row_edges[rows + 1] - 1 - y < t)  # [h'] near its patch's top or bottom
    edge_x = (x - col_edges[cols] < t) | (col_edges[cols + 1] - 1 - x < t)  # [w']
    outline = kept & (edge_y[:, None] | edge_x[None, :])
    shown[outline] = OUTLINE_RGB
    out[top:bottom, left:right] = shown
    return out.round().clip(0, 255).astype(np.uint8)


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

    Each label's panel is `region_overlay`. The first panel is the photo itself, with the region
    the model saw outlined when it is not the whole photo.

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

    if weights.ndim != 2:
        raise ValueError(f"weights must be [N, L], got shape {tuple(weights.shape)}")
    n_patches, n_labels = weights.shape
    if not (len(labels) == len(scores) == len(counts) == n_labels):
        raise ValueError(
            f"{n_labels} weight columns but {len(labels)} labels, {len(scores)} scores, {len(counts)} counts"
        )
    grid = _square_grid(n_patches, grid)
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
    fig = new_figure(figsize=(panel_w * cols, panel_h * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    whole = (left, top, right, bottom) == (0.0, 0.0, float(w), float(h))
    ax0 = axes[0, 0]
    ax0.imshow(image, interpolation="nearest")
    if not whole:
        ax0.add_patch(mpatches.Rectangle((left, top), right - left, bottom - top, fill=False, ec="white", ls="--", lw=1))
    ax0.set_title("input" if whole else "input (dashed: model view)", fontsize=9)
    for i in range(n_labels):
        ax = axes.flat[i + 1]
        panel = region_overlay(image, weights[:, i], crop_box=(left, top, right, bottom), grid=grid)
        ax.imshow(panel, interpolation="nearest")
        ax.set_title(f"{labels[i]}\nscore {scores[i]:.3f}, {_patch_count_text(int(counts[i]))}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_picture(fig, out)


RELIABILITY_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")  # one per group of labels


def reliability_figure(groups: "dict[str, dict[str, np.ndarray]]", *, title: str | None = None) -> "Figure":
    """A reliability diagram: per group of labels (e.g. seen, unseen), the observed frequency of
    the label against the predicted probability in each bin, beside the diagonal of a perfect
    calibration, and below it how many (image, label) entries each bin holds.

    Args:
        groups: name -> `metrics.reliability_bins(...)` ("edges", "count", "mean_probability",
            "frequency"); every group with the same bins.
        title: the figure's title.

    Returns:
        The Figure (save it with `save_picture`).

    Raises:
        ValueError: no group, or groups with different bins.
    """
    if not groups:
        raise ValueError("reliability_figure: no group of labels to draw")
    edges = next(iter(groups.values()))["edges"]
    if any(not np.array_equal(g["edges"], edges) for g in groups.values()):
        raise ValueError("reliability_figure: every group needs the same bins")
    n_bins = len(edges) - 1
    fig = new_figure(figsize=(5.2, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1.3)})
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    width = (edges[1] - edges[0]) / (len(groups) + 1)
    for i, (name, g) in enumerate(groups.items()):
        color = RELIABILITY_COLORS[i % len(RELIABILITY_COLORS)]
        filled = np.asarray(g["count"]) > 0
        n = int(np.asarray(g["count"]).sum())
        top.plot(
            np.asarray(g["mean_probability"])[filled], np.asarray(g["frequency"])[filled],
            marker="o", color=color, label=f"{name} ({n:,} entries)",
        )  # fmt: skip
        bottom.bar(edges[:-1] + (i + 0.5) * width, np.asarray(g["count"]), width=width, color=color, label=name)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency of the label", title=title or "reliability")
    top.legend(fontsize=8, loc="upper left")
    bottom.set(xlabel=f"predicted probability ({n_bins} bins)", ylabel="entries per bin")
    bottom.set_yscale("log")
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    bottom.yaxis.set_minor_formatter(NullFormatter())
    return fig


def plot_reliability(
    probs: Any, labels: Any, groups: "dict[str, Any]", out: str | Path, *, n_bins: int | None = None, title: str | None = None
) -> Path:
    """Write the reliability diagram of probabilities [N, K] against labels [N, K] in {+1, -1, 0},
    one curve per group of columns (name -> bool mask [K]), as a PNG.

    Raises:
        ValueError: as `metrics.reliability_bins`, or a mask of the wrong length.
    """
    from .metrics import ECE_BINS, reliability_bins

    p, y = np.asarray(probs), np.asarray(labels)
    bins = {}
    for name, mask in groups.items():
        m = np.asarray(mask, dtype=bool)
        if m.shape != (p.shape[-1],):
            raise ValueError(f"plot_reliability: group {name!r} has a mask of {m.shape}, the probabilities {p.shape[-1]} columns")
        bins[name] = reliability_bins(p[:, m], y[:, m], n_bins or ECE_BINS)
    return save_picture(reliability_figure(bins, title=title), out)
