"""A local web page to try c2srt: drop images, type a vocabulary, see ranked labels, decisions and why.

The page calls the same `Recognizer` as `c2srt predict` (same image transform, same forward pass,
same ranking, same probabilities), so what it shows is what the CLI would print. Its threshold
slider is a probability (P(label present), 0 to 1, default 0.5): each image lists its labels at
or above it and says how many pass. For a chosen label it also shows the ISR region heatmap over
the image and the label's IST neighbours in the category graph.

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
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .constants import DEFAULT_THRESHOLD, DEFAULT_TOP
from .images import ImageReadError, open_rgb
from .predict import Prediction, check_threshold
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
    """One upload on the page: the name shown, the picture drawn on, and the recognizer's result."""

    name: str
    image: Image.Image | None  # as shown (at most MAX_IMAGE_SIDE px); None when unreadable
    prediction: Prediction  # every label ranked, with patch weights and neighbours; or `error` set

    @property
    def error(self) -> str | None:
        return self.prediction.error


def tag_images(
    recognizer: Recognizer,
    images: Sequence[tuple[str, Image.Image]],
    labels: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
) -> list[TaggedImage]:
    """Score images against a vocabulary: `Recognizer.predict` with every label kept and its patch
    weights (and, for a calibrated model, its probability and decision at `threshold`).

    Args:
        recognizer: the model wrapper.
        images: (name, RGB image) pairs, already shrunk.
        labels: the vocabulary (see `parse_vocabulary`).
        threshold: the probability from which a label is present.

    Returns:
        One `TaggedImage` per input, in input order; its prediction is named after the upload.

    Raises:
        ValueError: from the recognizer, for a vocabulary it cannot use.
    """
    preds = recognizer.predict(
        [im for _, im in images], list(labels), top=None, threshold=threshold, batch_size=BATCH_SIZE, return_weights=True
    )
    return [TaggedImage(name, im, replace(p, source=name)) for (name, im), p in zip(images, preds)]


def heatmap(item: TaggedImage, label: str, image_size: int) -> tuple[np.ndarray, str]:
    """The image with the label's ISR patches highlighted (`viz.region_overlay`), and a caption.

    Returns:
        ([H, W, 3] uint8 image, caption in Markdown).

    Raises:
        ValueError: no image, or `label` is not in the image's vocabulary.
    """
    from .viz import region_overlay

    pred = item.prediction
    if item.image is None:
        raise ValueError(f"{item.name}: no image to draw on")
    if label not in dict(pred.labels):
        raise ValueError(f"label {label!r} is not in the vocabulary of {item.name}")
    weights = pred.weights.get(label)
    picture = region_overlay(np.asarray(item.image), weights, crop_box=pred.crop_box)
    caption = f"**{html.escape(label)}**: score {pred.score(label):.3f}"
    if pred.decided:
        caption += f", P(present) {pred.probability(label):.2f} ({'present' if pred.present(label) else 'absent'})"
    if weights is None:
        return picture, caption + " (this head gives no region weights)"
    kept = pred.counts.get(label)
    kept_txt = f"{kept} of {weights.size} patches selected (ISR)" if kept is not None else f"{weights.size} patches"
    caption += f"; {kept_txt}. Brighter = larger weight"
    if pred.crop_box is not None and pred.crop_box != (0, 0, *item.image.size):
        caption += f"; the dark margin is outside the model's centre crop ({image_size} px)"
    return picture, caption + "."


@dataclass
class PageTags:
    """What one click on "Tag" gives the page; `build_app` only shows it.

    Attributes:
        status: the status line (Markdown).
        done: False when nothing could be tagged (a bad vocabulary, no image, the model failed).
        items: every upload in upload order, an unreadable one carrying its error.
        notes: messages the page also pops up (problems, images left out), in order.
    """

    status: str
    done: bool = True
    items: list[TaggedImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def tagged(self) -> list[TaggedImage]:
        """The images that were read and tagged."""
        return [it for it in self.items if it.error is None]

    @property
    def first(self) -> TaggedImage | None:
        """The image the page explains first."""
        tagged = self.tagged
        return tagged[0] if tagged else None

    @property
    def decided(self) -> bool:
        """Whether the labels carry probabilities (the model has a calibrator), so the page's
        probability threshold applies; False also when nothing was tagged."""
        tagged = self.tagged
        return bool(tagged) and all(it.prediction.decided for it in tagged)

    def passing(self, threshold: float) -> dict[str, int]:
        """Per tagged image, how many of its labels have a probability at or above `threshold`
        ({} without a calibrator)."""
        if not self.decided:
            return {}
        return {it.name: len(it.prediction.shown(None, threshold)) for it in self.tagged}

    def predictions(self, top: float | None) -> list[dict[str, Any]]:
        """Each image's result as `c2srt predict --format json` writes it, cut to the `top` best labels."""
        return [_as_json(it, top) for it in self.items]


def _nothing_tagged(message: str) -> PageTags:
    return PageTags(f"**Nothing tagged:** {html.escape(message)}", done=False, notes=[message])


def tag_page(
    recognizer: Recognizer, files: Sequence[str | Path] | None, vocabulary: str | None, threshold: float = DEFAULT_THRESHOLD
) -> PageTags:
    """The page's "Tag": read the uploads, parse the vocabulary, tag every readable image.

    Nothing here raises for what a person can do on the page: a bad vocabulary or threshold, no
    image, an unreadable upload, too many images, or a model failure (e.g. out of memory) becomes a
    status line and notes, and the page keeps serving.

    Args:
        recognizer: the model wrapper.
        files: the uploaded files (Gradio's temporary paths), in upload order.
        vocabulary: the typed vocabulary (commas or new lines).
        threshold: the probability from which a label is present (the page's slider); the status
            line says how many labels pass it (a model without a calibrator ranks only, and says so).
    """
    try:
        labels = parse_vocabulary(vocabulary)
        threshold = check_threshold(threshold, "the probability threshold")
    except ValueError as e:
        return _nothing_tagged(str(e))
    if not files:
        return _nothing_tagged("no image: drop one or more image files first")
    notes: list[str] = []
    paths = [str(f) for f in files]
    if len(paths) > MAX_IMAGES:
        notes.append(f"only the first {MAX_IMAGES} of {len(paths)} images were tagged")
        paths = paths[:MAX_IMAGES]
    opened: list[tuple[str, Any] | TaggedImage] = []  # an image, or the error in its place
    for path, name in zip(paths, unique_names(paths)):
        try:
            opened.append((name, open_upload(path, name)))
        except ValueError as e:
            opened.append(TaggedImage(name, None, Prediction(name, error=str(e))))
            notes.append(str(e))
    good = [o for o in opened if isinstance(o, tuple)]
    try:
        done = iter(tag_images(recognizer, good, labels, threshold) if good else [])
    except ValueError as e:  # a vocabulary the model cannot use (e.g. a label its graph rejects)
        return _nothing_tagged(str(e))
    except RuntimeError as e:  # e.g. out of memory: say so on the page and keep serving
        _logger.exception("tagging %d image(s) failed", len(good))
        return PageTags(f"**Nothing tagged:** the model failed ({html.escape(str(e))})", done=False, notes=[f"the model failed: {e}"])
    items = [next(done) if isinstance(o, tuple) else o for o in opened]  # upload order kept
    tags = PageTags("", items=items, notes=notes)
    tags.status = f"Tagged {len(tags.tagged)} image(s) with {len(labels)} labels."
    if tags.decided:
        passing = sum(tags.passing(threshold).values())
        tags.status += f" {passing} label(s) in all pass P(present) ≥ {threshold:.2f}."
    elif tags.tagged:
        tags.status += " This model has no calibrator: labels are ranked, not decided (no probabilities)."
    if notes:
        tags.status += "\n\n" + "\n".join(f"- **problem:** {html.escape(n)}" for n in notes)
    return tags


# ------------------------------------------------------------------------------- rendering
_CELL = "border:none;border-bottom:1px solid var(--border-color-primary,#e5e7eb);padding:3px 8px;text-align:{}"
_TABLE = "width:100%;border-collapse:collapse;border:none;margin:0 0 0.8em 0"


def _cell(content: str, align: str = "left", cls: str = "", tag: str = "td", width: str = "") -> str:
    """One table cell; `content` must already be HTML-escaped."""
    klass = f" class='{cls}'" if cls else ""
    extra = f";width:{width}" if width else ""
    return f"<{tag}{klass} style='{_CELL.format(align)}{extra}'>{content}</{tag}>"


def results_html(items: Sequence[TaggedImage], threshold: float | None, top: int | None) -> str:
    """Ranked labels per image as an HTML table (label names escaped).

    A calibrated model's labels show their probability as a bar, and each image lists the labels
    at or above the probability `threshold` (after `top`) and says how many of its labels pass it.
    Without a calibrator the labels are ranked with score bars and `threshold` is not used.
    """
    if not items:
        return "<p class='c2srt-empty'>Tag some images to see their labels here.</p>"
    scores = [s for it in items for _, s in it.prediction.labels]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 1.0)
    span = (hi - lo) or 1.0
    parts = []
    for i, it in enumerate(items):
        parts.append(f"<div class='c2srt-image' data-index='{i}'><h4 style='margin:0.4em 0'>{html.escape(it.name)}</h4>")
        if it.error:
            parts.append(f"<p class='c2srt-error' style='color:#c0392b'>{html.escape(it.error)}</p></div>")
            continue
        pred = it.prediction
        decided = pred.decided and threshold is not None
        columns = [("#", "right"), ("label", "left"), ("score", "right")]
        columns += [("P(present)", "right"), ("", "left")] if decided else [("", "left")]
        columns += [("patches", "right")]
        head = "".join(_cell(t, a, tag="th") for t, a in columns)
        rows = pred.shown(int(top) if top else None, threshold)
        if decided:
            n_pass = len(pred.shown(None, threshold))
            parts.append(
                f"<p class='c2srt-passing' style='margin:0 0 0.3em 0'>{n_pass} of {len(pred.labels)} labels pass "
                f"P(present) ≥ {threshold:.2f}</p>"
            )
        if not rows:
            parts.append("<p class='c2srt-none'>No label at or above the threshold.</p></div>")
            continue
        parts.append(f"<table class='c2srt-ranked' style='{_TABLE}'><thead><tr>{head}</tr></thead><tbody>")
        for r, (name, s) in enumerate(rows, 1):
            fill = pred.probabilities[name] if decided else (s - lo) / span
            bar = f"<div style='height:0.7em;width:{max(2, int(100 * fill))}%;background:var(--color-accent,#f97316);border-radius:3px'></div>"
            cells = _cell(str(r), "right") + _cell(html.escape(name), cls="c2srt-label") + _cell(f"{s:.3f}", "right", cls="c2srt-score")
            if decided:
                cells += _cell(f"{pred.probabilities[name]:.2f}", "right", cls="c2srt-probability")
            cells += _cell(bar, width="40%") + _cell(str(pred.counts.get(name, "")), "right", cls="c2srt-patches")
            parts.append("<tr class='c2srt-row'>" + cells + "</tr>")
        parts.append("</tbody></table></div>")
    return "\n".join(parts)


def neighbors_html(item: TaggedImage | None, label: str | None) -> str:
    """The label's IST neighbours with edge strengths and their own scores on this image."""
    if item is None or not label:
        return ""
    if not item.prediction.neighbors:
        return "<p>No category graph: this model has no IST module.</p>"
    pairs = item.prediction.neighbors.get(label, [])
    if not pairs:
        return f"<p><b>{html.escape(label)}</b> has no neighbour in this vocabulary's graph.</p>"
    scores = dict(item.prediction.labels)
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
def with_checkpoint_vocabulary(vocabs: Mapping[str, Sequence[str]], recognizer: Recognizer) -> dict[str, list[str]]:
    """`vocabs` plus the labels of the recognizer's category graph, when it has one."""
    out = {k: list(v) for k, v in vocabs.items()}
    graph = getattr(recognizer, "graph", None)
    if graph is not None and getattr(graph, "labels", None):
        out[f"checkpoint ({len(graph.labels)} labels)"] = list(graph.labels)
    return out


def build_app(recognizer: Recognizer, *, saved_vocabularies: Mapping[str, Sequence[str]] | None = None) -> gr.Blocks:
    """The web page around a recognizer (not launched; see `launch_app` and `serve`).

    Scripts can drive it with `gradio_client` through three named endpoints (see the README):
    `/tag` (images, vocabulary, top, threshold -> status, predictions as `c2srt predict --format
    json` writes them, and the page's views), `/filter` (probability threshold, top -> the
    ranked-labels table) and
    `/explain` (image, label -> region picture, caption, neighbours).

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
    if saved_vocabularies is None:
        saved_vocabularies = with_checkpoint_vocabulary(load_vocabularies(), recognizer)
    vocabs = {k: list(v) for k, v in saved_vocabularies.items()}
    image_size = int(getattr(recognizer.model, "image_size", 0))

    def _warn(message: str) -> None:
        gr.Warning(message)
        _logger.info("page message: %s", message)

    def on_pick_vocabulary(name: str | None) -> Any:
        if not name or name not in vocabs:
            return gr.update()
        return gr.update(value=", ".join(vocabs[name]))

    def on_explain(items: list[TaggedImage], image: str | None, label: str | None):
        item = next((it for it in items or [] if it.name == image and it.error is None), None)
        if item is None or not label:
            return None, "", ""
        try:
            picture, caption = heatmap(item, label, image_size)
        except ValueError as e:
            return None, html.escape(str(e)), ""
        return picture, caption, neighbors_html(item, label)

    def on_tag(images: list[str] | None, vocabulary: str, top: float, threshold: float = DEFAULT_THRESHOLD):
        tags = tag_page(recognizer, images, vocabulary, threshold)
        for note in tags.notes:
            _warn(note)
        if not tags.done:
            return (tags.status, [], [], results_html([], None, None), gr.update(), gr.update(choices=[], value=None),
                    gr.update(choices=[], value=None), None, "", "")  # fmt: skip
        first = tags.first
        ranked = [n for n, _ in first.prediction.labels] if first else []
        label = ranked[0] if ranked else None
        return (
            tags.status,
            tags.items,
            tags.predictions(top),
            results_html(tags.items, threshold, top),
            gr.update(),
            gr.update(choices=[it.name for it in tags.tagged], value=first.name if first else None),
            gr.update(choices=ranked, value=label),
            *on_explain(tags.items, first.name if first else None, label),
        )

    def on_filter(items: list[TaggedImage], threshold: float, top: float) -> str:
        return results_html(items or [], threshold, top)

    def on_pick_image(items: list[TaggedImage], image: str | None):
        item = next((it for it in items or [] if it.name == image and it.error is None), None)
        if item is None:
            return gr.update(choices=[], value=None), None, "", ""
        ranked = [n for n, _ in item.prediction.labels]
        return (gr.update(choices=ranked, value=ranked[0]), *on_explain(items, image, ranked[0]))

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
                calibrated = getattr(recognizer, "calibrator", None) is not None
                threshold = gr.Slider(
                    0.0, 1.0, value=DEFAULT_THRESHOLD, step=0.01, elem_id="c2srt-threshold", interactive=calibrated,
                    label="Probability threshold: list the labels with P(present) at least this"
                    if calibrated else "Probability threshold (this model has no calibrator: labels are ranked, not decided)",
                )  # fmt: skip
                run = gr.Button("Tag", variant="primary", elem_id="c2srt-tag")
                status = gr.Markdown("", label="Status", elem_id="c2srt-status")
                predictions = gr.JSON(label="Predictions", visible=False)  # for scripts: as `c2srt predict` JSON
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
                        caption = gr.Markdown("", label="Caption", elem_id="c2srt-caption")
                        neighbors = gr.HTML("", label="Neighbours", elem_id="c2srt-neighbors")

        # Named endpoints (gradio_client: /tag, /filter, /explain); the page's own glue stays out of the API docs.
        saved.change(
            on_pick_vocabulary, inputs=saved, outputs=vocab, api_name="pick_vocabulary", api_visibility="undocumented"
        )
        run.click(
            on_tag,
            inputs=[files, vocab, top, threshold],
            outputs=[
                status, state, predictions, results, threshold, image_pick, label_pick, picture, caption, neighbors
            ],  # fmt: skip
            api_name="tag",
            concurrency_limit=1,  # one forward pass at a time: the recognizer caches one vocabulary
        )
        gr.on(
            [threshold.change, top.change], on_filter, inputs=[state, threshold, top], outputs=results, api_name="filter"
        )
        image_pick.change(
            on_pick_image,
            inputs=[state, image_pick],
            outputs=[label_pick, picture, caption, neighbors],
            api_name="pick_image",
            api_visibility="undocumented",
        )
        label_pick.change(
            on_explain,
            inputs=[state, image_pick, label_pick],
            outputs=[picture, caption, neighbors],
            api_name="explain",
        )
    return app


def _as_json(item: TaggedImage, top: float | None) -> dict[str, Any]:
    """An image's result as `c2srt predict --format json` writes it, cut to the `top` best labels."""
    d = item.prediction.to_dict()
    if top:
        d["labels"] = d["labels"][: int(top)]
    return d


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
    vocabs = load_vocabularies(vocab_dir)  # before the model, so a malformed file fails fast
    if checkpoint is not None:
        rec = Recognizer.from_checkpoint(checkpoint, device=device)
    else:
        rec = Recognizer.from_clip(clip, pretrained, device=device)  # type: ignore[arg-type]
    app = build_app(rec, saved_vocabularies=with_checkpoint_vocabulary(vocabs, rec))
    launch_app(app, host=host, port=port, allow_remote=allow_remote, block=True)
