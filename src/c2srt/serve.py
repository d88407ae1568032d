"""A local web page to try c2srt: drop images, type a vocabulary, see ranked labels and why.

The page calls the same `Recognizer` as `c2srt predict` (same image transform, same forward pass,
same ranking), so what it shows is what the CLI would print. For a chosen label it also shows the
ISR region heatmap over the image and the label's IST neighbours in the category graph.

It is built to run on a laptop with no network: the theme uses system fonts only (Gradio's default
theme fetches Google Fonts), analytics and the version check are off, nothing is shared through a
tunnel, and the server listens on 127.0.0.1 unless `allow_remote=True` is given explicitly.

Gradio is an optional dependency (`pip install c2srt[serve]`); it is imported only when a page is
built, so importing this module stays cheap.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .images import ImageReadError, center_crop_box, open_rgb
from .vocabulary import parse_labels, read_label_file

if TYPE_CHECKING:
    import gradio as gr
    from PIL import Image

    from .predict import Recognizer

_logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MAX_IMAGE_SIDE = 1024  # px: uploads are shrunk to this longest side before anything else
MAX_IMAGES = 32  # images tagged per click; more are dropped with a note on the page
MAX_VOCABULARY = 2000  # labels per vocabulary (text encoding and graph building grow with K)
MAX_UPLOAD_SIZE = "50mb"  # per file, enforced by Gradio before our code sees it
BATCH_SIZE = 8  # images per forward pass
DEFAULT_TOP = 10  # labels shown per image until the person changes it
HEAT_ALPHA = 0.6  # opacity of the heatmap colour over a selected patch at full weight
DIM_UNSELECTED = 0.45  # brightness of patches ISR did not select
DIM_OUTSIDE = 0.2  # brightness of the parts of the image outside the model's centre crop
HEATMAP_HEIGHT = 420  # px on the page
SERVE_EXTRA_HINT = "the web page needs Gradio: pip install c2srt[serve]"

# The 80 MS-COCO object classes, in the usual class-id order (offered as a saved vocabulary).
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# ---------------------------------------------------------------------------------- helpers
def _import_gradio() -> Any:
    """Gradio, with telemetry off; ImportError naming the extra when it is not installed."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read by Gradio at import and launch
    try:
        import gradio
    except ImportError as e:
        raise ImportError(SERVE_EXTRA_HINT) from e
    return gradio


def offline_theme() -> gr.themes.Base:
    """Gradio's default look with system fonts only, so the page fetches nothing from outside."""
    gr = _import_gradio()
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )


def parse_vocabulary(text: str | None) -> list[str]:
    """Labels from text separated by commas or new lines; blanks dropped, duplicates kept once.

    Raises:
        ValueError: no label at all, or more than `MAX_VOCABULARY`.

    Example:
        >>> parse_vocabulary("dog, cat\\n grass,,dog")
        ['dog', 'cat', 'grass']
    """
    labels = parse_labels(text)
    if len(labels) > MAX_VOCABULARY:
        raise ValueError(f"the vocabulary has {len(labels)} labels; at most {MAX_VOCABULARY} are allowed")
    return labels


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_host(host: str, allow_remote: bool = False) -> None:
    """Refuse to listen beyond loopback unless asked to; warn loudly when asked.

    Raises:
        ValueError: `host` is not a loopback address and `allow_remote` is False.
    """
    if is_loopback(host):
        return
    if not allow_remote:
        raise ValueError(
            f"host {host!r} is not a loopback address: the page would be reachable from other machines "
            "with no authentication. Pass allow_remote=True (CLI: --allow-remote) if you mean it."
        )
    _logger.warning(
        "serving on %s: anyone who can reach this address can use the page and the model (no authentication)", host
    )


def shrink(image: Image.Image, max_side: int = MAX_IMAGE_SIDE) -> Image.Image:
    """A copy no larger than `max_side` on its longest side (aspect kept); small images unchanged."""
    from PIL import Image

    if max(image.size) <= max_side:
        return image
    out = image.copy()
    out.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return out


def open_upload(path: str | Path, name: str | None = None) -> Image.Image:
    """An uploaded file as an RGB image of at most `MAX_IMAGE_SIDE` px.

    Raises:
        ImageReadError: the file is not a readable image; the message names `name` (the file name
            the person uploaded), not Gradio's temporary path.
    """
    name = name or Path(path).name
    try:
        return shrink(open_rgb(path))
    except ImageReadError as e:
        raise ImageReadError(name, e.reason) from e


def load_vocabularies(vocab_dir: str | Path | None = None) -> dict[str, list[str]]:
    """Saved vocabularies: COCO's 80 classes, plus one per `*.txt` file (one label a line) in `vocab_dir`.

    Raises:
        ValueError: `vocab_dir` is not a folder, or one of its files is malformed (file and line named).
    """
    vocabs: dict[str, list[str]] = {"COCO (80 classes)": list(COCO_CLASSES)}
    if vocab_dir is not None:
        folder = Path(vocab_dir)
        if not folder.is_dir():
            raise ValueError(f"vocabulary folder {folder} does not exist or is not a folder")
        for path in sorted(folder.glob("*.txt")):
            vocabs[path.stem] = read_label_file(path, "vocabulary file")
    return vocabs


def unique_names(paths: Sequence[str | Path]) -> list[str]:
    """File names to show for uploads; a repeated name gets " (2)", " (3)"... so each can be picked."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for p in paths:
        base = Path(p).name
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base} ({seen[base]})")
    return names


# ------------------------------------------------------------------------------ tagging
@dataclass
class TaggedImage:
    """One image's result on the page: ranked labels, region weights and graph neighbours."""

    name: str
    image: Image.Image | None  # as shown (at most MAX_IMAGE_SIDE px); None when unreadable
    vocabulary: list[str] = field(default_factory=list)
    ranked: list[tuple[str, float]] = field(default_factory=list)  # every label, best first
    counts: dict[str, int] = field(default_factory=dict)  # ISR patches kept per label
    weights: np.ndarray | None = None  # [N, K] patch weights, K in vocabulary order
    neighbors: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # IST graph, per label
    error: str | None = None

    def score(self, label: str) -> float:
        return dict(self.ranked)[label]


def graph_for(recognizer: Recognizer, labels: Sequence[str]) -> Any:
    """The category graph the recognizer's IST uses for `labels` (None when IST is off)."""
    if getattr(recognizer.model, "ist", None) is None:
        return None
    public = getattr(recognizer, "graph_for", None)
    build = public if callable(public) else recognizer._graph_for
    return build(list(labels))


def neighbors_in(graph: Any, labels: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    """Per label, its graph neighbours that are in the vocabulary (the only ones IST uses), strongest first."""
    if graph is None:
        return {}
    vocab = set(labels)
    out: dict[str, list[tuple[str, float]]] = {}
    for name in labels:
        if name not in graph:
            out[name] = []
            continue
        pairs = [(n, float(w)) for n, w in graph.neighbors(name) if n in vocab and n != name]
        out[name] = sorted(pairs, key=lambda p: (-p[1], p[0]))
    return out


def tag_images(
    recognizer: Recognizer, images: Sequence[tuple[str, Image.Image]], labels: Sequence[str]
) -> list[TaggedImage]:
    """Score images against a vocabulary with the recognizer (the `c2srt predict` path).

    Args:
        recognizer: the model wrapper.
        images: (name, RGB image) pairs, already shrunk.
        labels: the vocabulary (see `parse_vocabulary`).

    Returns:
        One `TaggedImage` per input, in input order, with every label ranked best first.

    Raises:
        ValueError: from the recognizer, for a vocabulary it cannot use.
    """
    import torch

    labels = list(labels)
    neighbors = neighbors_in(graph_for(recognizer, labels), labels)
    out: list[TaggedImage] = []
    for start in range(0, len(images), BATCH_SIZE):
        chunk = images[start : start + BATCH_SIZE]
        logits, model_out = recognizer.scores([im for _, im in chunk], labels)  # [B, K]
        counts = model_out.counts.cpu() if model_out.counts is not None else None  # [B, K]
        weights = model_out.weights.float().cpu().numpy() if model_out.weights is not None else None  # [B, N, K]
        for b, (name, im) in enumerate(chunk):
            order = torch.argsort(logits[b], descending=True, stable=True).tolist()  # as Recognizer.predict
            out.append(
                TaggedImage(
                    name=name,
                    image=im,
                    vocabulary=labels,
                    ranked=[(labels[k], float(logits[b, k])) for k in order],
                    counts={labels[k]: int(counts[b, k]) for k in order} if counts is not None else {},
                    weights=weights[b] if weights is not None else None,
                    neighbors=neighbors,
                )
            )
    return out


def shown_labels(item: TaggedImage, threshold: float | None, top: int | None) -> list[tuple[str, float]]:
    """The labels to list for an image: the `top` best, then those scoring at least `threshold`."""
    ranked = item.ranked[: int(top)] if top else item.ranked
    if threshold is None:
        return list(ranked)
    return [(n, s) for n, s in ranked if s >= threshold]


def heatmap(item: TaggedImage, label: str, image_size: int) -> tuple[np.ndarray, str]:
    """The image with the label's ISR patches highlighted, and a caption.

    The model sees the centre square of the image (short side resized, centre crop: see
    `build_transform`), so the patch grid is laid over that square and the rest is dimmed.

    Returns:
        ([H, W, 3] uint8 image, caption in Markdown).

    Raises:
        ValueError: `label` is not in the image's vocabulary.
    """
    from PIL import Image

    if item.image is None:
        raise ValueError(f"{item.name}: no image to draw on")
    if label not in item.vocabulary:
        raise ValueError(f"label {label!r} is not in the vocabulary of {item.name}")
    img = np.asarray(item.image, dtype=np.float32)  # [H, W, 3]
    h, w = img.shape[:2]
    box = center_crop_box(w, h)
    side = round(box[2] - box[0])
    top, left = round(box[1]), round(box[0])
    out = img * DIM_OUTSIDE
    score = item.score(label)
    caption = f"**{html.escape(label)}**: score {score:.3f}"
    if item.weights is None:
        out[top : top + side, left : left + side] = img[top : top + side, left : left + side]
        return out.astype(np.uint8), caption + " (this head gives no region weights)"
    n_patches = item.weights.shape[0]
    grid = round(math.sqrt(n_patches))
    if grid * grid != n_patches:
        raise ValueError(f"cannot lay {n_patches} patches on a square grid")
    heat = item.weights[:, item.vocabulary.index(label)].reshape(grid, grid)  # [N] -> [g, g]
    heat = heat / heat.max() if heat.max() > 0 else np.zeros_like(heat)
    heat_px = np.asarray(  # [g, g] -> [side, side], one block per patch
        Image.fromarray((heat * 255).astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST),
        dtype=np.float32,
    )[..., None] / 255.0
    crop = img[top : top + side, left : left + side]
    color = np.array([255.0, 200.0, 0.0]) * heat_px + np.array([230.0, 40.0, 40.0]) * (1 - heat_px)  # red -> yellow
    alpha = HEAT_ALPHA * heat_px
    lit = crop * (1 - alpha) + color * alpha
    out[top : top + side, left : left + side] = np.where(heat_px > 0, lit, crop * DIM_UNSELECTED)
    kept = item.counts.get(label)
    kept_txt = f"{kept} of {n_patches} patches selected (ISR)" if kept is not None else f"{n_patches} patches"
    caption += f"; {kept_txt}. Brighter = larger weight; the dark margin is outside the model's centre crop ({image_size} px)."
    return out.clip(0, 255).astype(np.uint8), caption


# ------------------------------------------------------------------------------- rendering
_CELL = "border:none;border-bottom:1px solid var(--border-color-primary,#e5e7eb);padding:3px 8px;text-align:{}"
_TABLE = "width:100%;border-collapse:collapse;border:none;margin:0 0 0.8em 0"


def _cell(content: str, align: str = "left", cls: str = "", tag: str = "td", width: str = "") -> str:
    """One table cell; `content` must already be HTML-escaped."""
    klass = f" class='{cls}'" if cls else ""
    extra = f";width:{width}" if width else ""
    return f"<{tag}{klass} style='{_CELL.format(align)}{extra}'>{content}</{tag}>"


def results_html(items: Sequence[TaggedImage], threshold: float | None, top: int | None) -> str:
    """Ranked labels per image as an HTML table (label names escaped), with score bars."""
    if not items:
        return "<p class='c2srt-empty'>Tag some images to see their labels here.</p>"
    scores = [s for it in items for _, s in it.ranked]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 1.0)
    span = (hi - lo) or 1.0
    head = "".join(
        _cell(t, a, tag="th") for t, a in (("#", "right"), ("label", "left"), ("score", "right"), ("", "left"), ("patches", "right"))
    )
    parts = []
    for i, it in enumerate(items):
        parts.append(f"<div class='c2srt-image' data-index='{i}'><h4 style='margin:0.4em 0'>{html.escape(it.name)}</h4>")
        if it.error:
            parts.append(f"<p class='c2srt-error' style='color:#c0392b'>{html.escape(it.error)}</p></div>")
            continue
        rows = shown_labels(it, threshold, top)
        if not rows:
            parts.append("<p class='c2srt-none'>No label at or above the threshold.</p></div>")
            continue
        parts.append(f"<table class='c2srt-ranked' style='{_TABLE}'><thead><tr>{head}</tr></thead><tbody>")
        for r, (name, s) in enumerate(rows, 1):
            width = max(2, int(100 * (s - lo) / span))
            bar = f"<div style='height:0.7em;width:{width}%;background:var(--color-accent,#f97316);border-radius:3px'></div>"
            parts.append(
                "<tr class='c2srt-row'>"
                + _cell(str(r), "right")
                + _cell(html.escape(name), cls="c2srt-label")
                + _cell(f"{s:.3f}", "right", cls="c2srt-score")
                + _cell(bar, width="40%")
                + _cell(str(it.counts.get(name, "")), "right", cls="c2srt-patches")
                + "</tr>"
            )
        parts.append("</tbody></table></div>")
    return "\n".join(parts)


def neighbors_html(item: TaggedImage | None, label: str | None) -> str:
    """The label's IST neighbours with edge strengths and their own scores on this image."""
    if item is None or not label:
        return ""
    if not item.neighbors:
        return "<p>No category graph: this model has no IST module.</p>"
    pairs = item.neighbors.get(label, [])
    if not pairs:
        return f"<p><b>{html.escape(label)}</b> has no neighbour in this vocabulary's graph.</p>"
    scores = dict(item.ranked)
    head = "".join(_cell(t, a, tag="th") for t, a in (("neighbour", "left"), ("strength", "right"), ("its score here", "right")))
    rows = "".join(
        "<tr class='c2srt-neighbor'>"
        + _cell(html.escape(n), cls="c2srt-neighbor-name")
        + _cell(f"{w:.2f}", "right", cls="c2srt-strength")
        + _cell(f"{scores.get(n, float('nan')):.3f}", "right")
        + "</tr>"
        for n, w in pairs
    )
    return (
        f"<p>Neighbours of <b>{html.escape(label)}</b> in the category graph "
        "(IST passes messages along these edges):</p>"
        f"<table class='c2srt-neighbors' style='{_TABLE}'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


# ------------------------------------------------------------------------------------ page
def build_app(recognizer: Recognizer, *, saved_vocabularies: Mapping[str, Sequence[str]] | None = None) -> gr.Blocks:
    """The web page around a recognizer (not launched; see `launch_app` and `serve`).

    Args:
        recognizer: the model wrapper, e.g. `Recognizer.from_checkpoint(path)`.
        saved_vocabularies: name -> labels offered in a dropdown; default: `load_vocabularies()`
            (COCO's 80 classes) plus the checkpoint's graph labels when it has a graph.

    Returns:
        A `gradio.Blocks`; launch it with `launch_app` to keep the offline theme and loopback default.

    Raises:
        ImportError: Gradio is not installed (`pip install c2srt[serve]`).
    """
    gr = _import_gradio()
    vocabs = {k: list(v) for k, v in (saved_vocabularies if saved_vocabularies is not None else load_vocabularies()).items()}
    graph = getattr(recognizer, "graph", None)
    if saved_vocabularies is None and graph is not None and getattr(graph, "labels", None):
        vocabs[f"checkpoint ({len(graph.labels)} labels)"] = list(graph.labels)
    image_size = int(getattr(recognizer.model, "image_size", 0))

    def _warn(message: str) -> None:
        gr.Warning(message)
        _logger.info("page message: %s", message)

    def on_pick_vocabulary(name: str | None) -> Any:
        if not name or name not in vocabs:
            return gr.update()
        return gr.update(value=", ".join(vocabs[name]))

    def _label_view(items: list[TaggedImage], image_name: str | None, label: str | None):
        item = next((it for it in items if it.name == image_name and it.error is None), None)
        if item is None or not label:
            return None, "", ""
        try:
            picture, caption = heatmap(item, label, image_size)
        except ValueError as e:
            return None, html.escape(str(e)), ""
        return picture, caption, neighbors_html(item, label)

    def on_tag(files: list[str] | None, vocab_text: str, top: float):
        empty = ([], results_html([], None, None), gr.update(), gr.update(choices=[], value=None),
                 gr.update(choices=[], value=None), None, "", "")  # fmt: skip
        try:
            labels = parse_vocabulary(vocab_text)
        except ValueError as e:
            _warn(str(e))
            return (f"**Nothing tagged:** {html.escape(str(e))}", *empty)
        if not files:
            msg = "no image: drop one or more image files first"
            _warn(msg)
            return (f"**Nothing tagged:** {msg}", *empty)
        notes: list[str] = []
        paths = [str(f) for f in files]
        if len(paths) > MAX_IMAGES:
            notes.append(f"only the first {MAX_IMAGES} of {len(paths)} images were tagged")
            paths = paths[:MAX_IMAGES]
        opened: list[tuple[str, Any] | TaggedImage] = []  # an image, or the error in its place
        for p, name in zip(paths, unique_names(paths)):
            try:
                opened.append((name, open_upload(p, name)))
            except ValueError as e:
                opened.append(TaggedImage(name=name, image=None, error=str(e)))
                notes.append(str(e))
        good = [o for o in opened if isinstance(o, tuple)]
        try:
            done = iter(tag_images(recognizer, good, labels) if good else [])
        except ValueError as e:  # a vocabulary the model cannot use (e.g. a label its graph rejects)
            _warn(str(e))
            return (f"**Nothing tagged:** {html.escape(str(e))}", *empty)
        except RuntimeError as e:  # e.g. out of memory: say so on the page and keep serving
            _logger.exception("tagging %d image(s) failed", len(good))
            _warn(f"the model failed: {e}")
            return (f"**Nothing tagged:** the model failed ({html.escape(str(e))})", *empty)
        items = [next(done) if isinstance(o, tuple) else o for o in opened]  # upload order kept
        for n in notes:
            _warn(n)
        tagged = [it for it in items if it.error is None]
        status = f"Tagged {len(tagged)} image(s) with {len(labels)} labels."
        if notes:
            status += "\n\n" + "\n".join(f"- **problem:** {html.escape(n)}" for n in notes)
        scores = [s for it in tagged for _, s in it.ranked]
        slider = gr.update()
        if scores:
            lo, hi = math.floor(min(scores) * 100) / 100, math.ceil(max(scores) * 100) / 100
            slider = gr.update(minimum=lo, maximum=max(hi, lo + 0.01), value=lo)
        first = tagged[0] if tagged else None
        label = first.ranked[0][0] if first else None
        picture, caption, neigh = _label_view(items, first.name if first else None, label)
        return (
            status,
            items,
            results_html(items, None, top),
            slider,
            gr.update(choices=[it.name for it in tagged], value=first.name if first else None),
            gr.update(choices=[n for n, _ in first.ranked] if first else [], value=label),
            picture,
            caption,
            neigh,
        )

    def on_filter(items: list[TaggedImage], threshold: float, top: float) -> str:
        return results_html(items or [], threshold, top)

    def on_pick_image(items: list[TaggedImage], image_name: str | None):
        item = next((it for it in items or [] if it.name == image_name and it.error is None), None)
        if item is None:
            return gr.update(choices=[], value=None), None, "", ""
        label = item.ranked[0][0]
        return (gr.update(choices=[n for n, _ in item.ranked], value=label), *_label_view(items, image_name, label))

    with gr.Blocks(title="c2srt: tag images with any vocabulary", analytics_enabled=False) as app:
        gr.Markdown(
            "## c2srt: tag images with any vocabulary\n"
            "Drop images, type the labels you care about (commas or new lines), and press **Tag**. "
            "Pick a label to see the image regions ISR selected for it and its neighbours in the category graph."
        )
        state = gr.State([])
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(label="Images", file_count="multiple", file_types=["image"], elem_id="c2srt-files")
                saved = gr.Dropdown(
                    choices=list(vocabs), value=None, label="Saved vocabulary", elem_id="c2srt-saved", allow_custom_value=False
                )
                vocab = gr.Textbox(
                    label="Vocabulary", lines=4, placeholder="dog, frisbee, grass, person", elem_id="c2srt-vocab"
                )
                top = gr.Slider(1, 50, value=DEFAULT_TOP, step=1, label="Show at most (labels per image)", elem_id="c2srt-top")
                threshold = gr.Slider(-1.0, 1.0, value=-1.0, step=0.01, label="Score threshold", elem_id="c2srt-threshold")
                run = gr.Button("Tag", variant="primary", elem_id="c2srt-tag")
                status = gr.Markdown("", elem_id="c2srt-status")
            with gr.Column(scale=3):
                results = gr.HTML(results_html([], None, None), label="Ranked labels", elem_id="c2srt-results")
                with gr.Row():
                    image_pick = gr.Dropdown(choices=[], label="Image", elem_id="c2srt-image")
                    label_pick = gr.Dropdown(choices=[], label="Label", elem_id="c2srt-label")
                with gr.Row():
                    picture = gr.Image(
                        label="Regions (ISR)", type="numpy", interactive=False, height=HEATMAP_HEIGHT,
                        elem_id="c2srt-heatmap", scale=3,
                    )  # fmt: skip
                    with gr.Column(scale=2):
                        caption = gr.Markdown("", elem_id="c2srt-caption")
                        neighbours = gr.HTML("", elem_id="c2srt-neighbors")

        saved.change(on_pick_vocabulary, inputs=saved, outputs=vocab)
        run.click(
            on_tag,
            inputs=[files, vocab, top],
            outputs=[status, state, results, threshold, image_pick, label_pick, picture, caption, neighbours],
            concurrency_limit=1,  # one forward pass at a time: the recognizer caches one vocabulary
        )
        threshold.change(on_filter, inputs=[state, threshold, top], outputs=results)
        top.change(on_filter, inputs=[state, threshold, top], outputs=results)
        image_pick.change(on_pick_image, inputs=[state, image_pick], outputs=[label_pick, picture, caption, neighbours])
        label_pick.change(_label_view, inputs=[state, image_pick, label_pick], outputs=[picture, caption, neighbours])
    return app


def launch_app(
    app: gr.Blocks,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    block: bool = True,
) -> str:
    """Start the page's server: offline theme, no sharing, no analytics, loopback unless allowed.

    Args:
        app: from `build_app`.
        host, port: where to listen (port 0 is not supported by Gradio: pick a free one).
        allow_remote: needed for any non-loopback `host` (a warning is logged).
        block: serve until interrupted (True) or return once the server is up (False; stop it
            with `app.close()`).

    Returns:
        The local URL of the page.

    Raises:
        ValueError: a non-loopback host without `allow_remote`, or the port cannot be used.
    """
    check_host(host, allow_remote)
    try:
        _, local_url, _ = app.launch(
            server_name=host,
            server_port=int(port),
            share=False,
            prevent_thread_lock=True,  # return here, so the address is logged before blocking
            quiet=True,
            show_error=False,
            max_file_size=MAX_UPLOAD_SIZE,
            ssr_mode=False,
            mcp_server=False,
            theme=offline_theme(),
        )
    except OSError as e:  # e.g. the port is taken
        raise ValueError(f"cannot listen on {host}:{port}: {e}") from e
    _logger.info("c2srt page at %s (Ctrl-C stops it)" if block else "c2srt page at %s", local_url)
    if block:
        app.block_thread()  # until Ctrl-C, then closes the server
    return local_url


def serve(
    checkpoint: str | Path | None = None,
    *,
    clip: str | None = None,
    pretrained: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    vocab_dir: str | Path | None = None,
    device: str = "cpu",
) -> None:
    """Serve the page for a checkpoint (or plain CLIP weights) until interrupted.

    Args:
        checkpoint: a trained c2srt checkpoint; or give `clip` instead.
        clip, pretrained: an open_clip model name and weights tag for zero-shot use (no IST).
        host, port: where to listen; only loopback unless `allow_remote`.
        allow_remote: allow a non-loopback `host` (logs a warning: the page has no authentication).
        vocab_dir: a folder of `*.txt` vocabularies (one label a line) offered in the dropdown.
        device: torch device for the model.

    Raises:
        ValueError: neither or both of `checkpoint` and `clip`; a non-loopback host without
            `allow_remote`; a malformed vocabulary file.
        ImportError: Gradio is not installed (`pip install c2srt[serve]`).
    """
    from .predict import Recognizer

    if (checkpoint is None) == (clip is None):
        raise ValueError("give exactly one of checkpoint (a c2srt checkpoint) or clip (an open_clip model name)")
    check_host(host, allow_remote)  # before loading a model, so a refused host fails fast
    _import_gradio()
    vocabs = load_vocabularies(vocab_dir)
    if checkpoint is not None:
        rec = Recognizer.from_checkpoint(checkpoint, device=device)
        if rec.graph is not None:
            vocabs[f"checkpoint ({len(rec.graph.labels)} labels)"] = list(rec.graph.labels)
    else:
        rec = Recognizer.from_clip(clip, pretrained, device=device)  # type: ignore[arg-type]
    app = build_app(rec, saved_vocabularies=vocabs)
    launch_app(app, host=host, port=port, allow_remote=allow_remote, block=True)
