"""Open-vocabulary tagging of real images: any vocabulary, ranked labels, and why.

`Recognizer` wraps a trained c2srt checkpoint, or plain CLIP weights for zero-shot use with the same
heads. The label embeddings and the category graph are computed once per vocabulary, not per batch.
Unreadable images are reported and skipped; they never end the run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from .config import ModelCfg

if TYPE_CHECKING:
    from PIL import Image

    from .graph import CategoryGraph
    from .model import C2SRT, LabelSet

_logger = logging.getLogger(__name__)

#: labels kept per image when neither a number nor a threshold is asked for
DEFAULT_TOP = 5

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class Prediction:
    """Ranked labels for one image (`error` set, and no labels, when the image could not be read)."""

    source: str
    labels: list[tuple[str, float]] = field(default_factory=list)  # (name, score), best first
    counts: dict[str, int] = field(default_factory=dict)  # ISR patches kept per returned label
    error: str | None = None
    explanation: str | None = None  # path of the explanation PNG, when asked

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"image": self.source, "labels": [{"label": n, "score": round(s, 6)} for n, s in self.labels]}
        if self.counts:
            for item in d["labels"]:
                item["patches"] = self.counts.get(item["label"])
        if self.error:
            d["error"] = self.error
        if self.explanation:
            d["explanation"] = self.explanation
        return d


def iter_image_paths(inputs: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given, and image files inside folders (recursively, sorted), streamed lazily."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_SUFFIXES):
                        yield Path(root) / f
        else:
            yield p  # a missing file is reported as an error by the loader, not here


def load_image(path: str | Path) -> "Image.Image":
    """An RGB PIL image; raises ValueError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise ValueError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise ValueError(f"{path}: is a folder, not an image") from e
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: not a readable image ({e.__class__.__name__}: {e})") from e


#: most labels drawn per explanation picture
EXPLAIN_TOP = 3


def _center_crop_box(width: int, height: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the square the eval transform keeps (short side resized, centre crop)."""
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


class Recognizer:
    """Tags images with any vocabulary.

    The vocabulary (label embeddings, and the category graph when IST is on) is prepared once and
    reused for every batch while the labels stay the same.

    Example:
        >>> rec = Recognizer.from_checkpoint("runs/demo/full/model.safetensors")
        >>> rec.predict(["photo.jpg"], ["dog", "frisbee", "grass"], top=3)[0].labels
        [('dog', 0.71), ('grass', 0.52), ('frisbee', 0.33)]
    """

    def __init__(
        self,
        model: "C2SRT",
        *,
        graph: "CategoryGraph | None" = None,
        device: str | torch.device = "cpu",
    ) -> None:
        from .data.transforms import build_transform

        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._graph = graph
        self.transform = build_transform(model.image_size, model.mean, model.std, train=False, rand_augment=False)
        self._vocab: "LabelSet | None" = None
        self._vocab_graph: "tuple[tuple[str, ...], CategoryGraph] | None" = None

    @property
    def graph(self) -> "CategoryGraph | None":
        """The base category graph (the checkpoint's, or one the user gave); extended on the fly."""
        return self._graph

    @graph.setter
    def graph(self, graph: "CategoryGraph | None") -> None:
        self._graph = graph
        self._vocab = None  # prepared vocabularies used the old graph
        self._vocab_graph = None
        self.model.eval()  # also drops the model's cache of graph-refined label embeddings

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Recognizer":
        """A trained c2srt checkpoint (weights, config, vocabulary and graph in one file)."""
        from .checkpoint import load_checkpoint
        from .graph import CategoryGraph

        model, info = load_checkpoint(path, device=device)
        graph = CategoryGraph.from_dict(info.graph, where=str(path)) if info.graph else None
        return cls(model, graph=graph, device=device)

    @classmethod
    def from_clip(
        cls, name: str, pretrained: str | None, *, head: str = "isr", device: str | torch.device = "cpu"
    ) -> "Recognizer":
        """Plain CLIP weights, zero-shot, with the same heads (IST needs training, so it is off)."""
        from .config import HeadCfg, IstCfg
        from .model import create_model

        cfg = ModelCfg(backbone=name, pretrained=pretrained, distill=False, head=HeadCfg(name=head), ist=IstCfg(mode="off"))
        return cls(create_model(cfg, device=device, teacher=False), device=device)

    # -------------------------------------------------------------------- vocabulary
    def vocabulary(self, labels: Sequence[str]) -> "LabelSet":
        """Embed a vocabulary (and build its graph) once; reused while the labels stay the same.

        Raises:
            ValueError: an empty vocabulary, an empty or duplicate label.
        """
        labels = [str(s).strip() for s in labels]
        if not labels or any(not s for s in labels):
            raise ValueError("the vocabulary is empty or has an empty label")
        if self._vocab is not None and self._vocab.names == labels:
            return self._vocab
        graph = self.graph_for(labels) if self.model.ist is not None else None
        with torch.no_grad():
            self._vocab = self.model.label_set(labels, graph)
        return self._vocab

    def graph_for(self, labels: Sequence[str]) -> "CategoryGraph":
        """The category graph for `labels`: the base graph, extended on the fly to labels it lacks.

        Missing labels get edges from the embedding source (nearest labels by the model's own text
        embeddings, adaptive cut); the base graph's edges are kept as they are. Built once per
        vocabulary.
        """
        from .graph import build_graph

        labels = list(labels)
        key = tuple(labels)
        if self._vocab_graph is not None and self._vocab_graph[0] == key:
            return self._vocab_graph[1]
        base = self.graph
        known = set(base.labels) if base is not None else set()
        if base is not None and all(n in known for n in labels):
            graph = base
        else:
            missing = [n for n in labels if n not in known]
            _logger.info(
                "category graph: %d label(s) %s, linked on the fly (embedding source): %s",
                len(missing),
                "not in the model's graph" if base is not None else "and no graph given",
                ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else ""),
            )

            def encode(names: list[str]) -> np.ndarray:
                with torch.no_grad():  # cached by the label encoder: the vocabulary is embedded once
                    return self.model.label_encoder.encode_labels(names).float().cpu().numpy()

            seen = [n for n in labels if n in known] or None
            built = build_graph(labels, seen=seen, source="embedding", encoder=encode)
            graph = base.extend(built) if base is not None else built
        self._vocab_graph = (key, graph)
        return graph

    # ----------------------------------------------------------------------- predict
    def predict(
        self,
        images: Sequence[Any] | str | Path,
        labels: Sequence[str],
        *,
        top: int | None = DEFAULT_TOP,
        threshold: float | None = None,
        batch_size: int = 32,
        explain_dir: str | Path | None = None,
        explain_top: int = EXPLAIN_TOP,
        progress: bool = False,
        workers: int | None = None,
    ) -> list[Prediction]:
        """Ranked labels per image, in input order (see `iter_predict` for streaming and the arguments)."""
        return list(
            self.iter_predict(
                images,
                labels,
                top=top,
                threshold=threshold,
                batch_size=batch_size,
                explain_dir=explain_dir,
                explain_top=explain_top,
                progress=progress,
                workers=workers,
            )
        )

    def iter_predict(
        self,
        images: Sequence[Any] | str | Path,
        labels: Sequence[str],
        *,
        top: int | None = DEFAULT_TOP,
        threshold: float | None = None,
        batch_size: int = 32,
        explain_dir: str | Path | None = None,
        explain_top: int = EXPLAIN_TOP,
        progress: bool = False,
        workers: int | None = None,
    ) -> Iterator[Prediction]:
        """Stream predictions batch by batch over files and folders, in input order.

        The arguments are checked and the vocabulary prepared when this is called; images are read
        lazily as the iterator is consumed. An unreadable image yields a `Prediction` with `error`
        set (and a warning in the log); it never ends the run.

        Args:
            images: image files and/or folders (searched recursively, sorted), or PIL images (named
                `image0`, `image1`, ... by position), in any mix.
            labels: the vocabulary.
            top: keep the K best labels per image (None: all).
            threshold: keep labels scoring at least this (applied after `top`).
            batch_size: images per forward pass.
            explain_dir: write a PNG per image with the selected patches of its returned labels
                (at most `explain_top`; the best label when none is returned).
            explain_top: most labels drawn per explanation picture.
            progress: show a progress bar (tqdm, on stderr).
            workers: processes that read and transform image files while the model runs (None:
                `default_workers()`; 0: read them in this process). Used when the inputs are files
                or folders (not in-memory images) and more than one batch may come.

        Raises:
            ValueError: a bad `top`, `batch_size`, `explain_top` or `workers`, or a bad vocabulary.
        """
        if isinstance(images, (str, Path)):
            images = [images]
        if top is not None and top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if explain_top < 1:
            raise ValueError(f"explain_top must be >= 1, got {explain_top}")
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if explain_dir is not None:
            explain_dir = Path(explain_dir)
            if explain_dir.exists() and not explain_dir.is_dir():
                raise ValueError(f"{explain_dir}: the explanation folder is a file")
        vocab = self.vocabulary(labels)
        images = list(images)
        workers = default_workers() if workers is None else workers
        if workers and _worth_workers(images, batch_size):
            return self._stream_files(images, vocab, top, threshold, batch_size, explain_dir, explain_top, progress, workers)
        return self._stream(images, vocab, top, threshold, batch_size, explain_dir, explain_top, progress)

    def _stream(
        self,
        images: list[Any],
        vocab: "LabelSet",
        top: int | None,
        threshold: float | None,
        batch_size: int,
        explain_dir: Path | None,
        explain_top: int,
        progress: bool,
    ) -> Iterator[Prediction]:
        def sources() -> Iterator[tuple[str, Any]]:
            for i, item in enumerate(images):
                if isinstance(item, (str, Path)):
                    for path in iter_image_paths([item]):
                        yield str(path), path
                else:
                    yield f"image{i}", item

        bar = None
        if progress:
            from tqdm import tqdm

            total = sum(1 for _ in sources())  # names only: cheap next to the forward passes
            bar = tqdm(total=total, unit="img", desc="predict")
        used_names: set[str] = set()
        pending: list[tuple[str, Any, str | None]] = []  # (name, image or None, error), in input order
        n_images = 0

        def flush() -> Iterator[Prediction]:
            """Run the images of `pending` as one batch; yield every entry (errors too) in order."""
            batch = [(name, img) for name, img, err in pending if err is None]
            results = self._run_batch(batch, vocab, top, threshold, explain_dir, explain_top, used_names)
            for name, _, err in pending:
                yield Prediction(name, error=err) if err is not None else next(results)
            if bar is not None:
                bar.update(len(pending))

        try:
            for name, src in sources():
                try:
                    img = load_image(src) if isinstance(src, Path) else _as_rgb(src, name)
                except ValueError as e:
                    _logger.warning("skipping %s", e)
                    if n_images == 0:  # nothing waiting before it: report it now
                        if bar is not None:
                            bar.update(1)
                        yield Prediction(name, error=str(e))
                    else:
                        pending.append((name, None, str(e)))
                    continue
                pending.append((name, img, None))
                n_images += 1
                if n_images == batch_size:
                    yield from flush()
                    pending, n_images = [], 0
            if pending:
                yield from flush()
        finally:
            if bar is not None:
                bar.close()

    def _stream_files(
        self,
        images: list[Any],
        vocab: "LabelSet",
        top: int | None,
        threshold: float | None,
        batch_size: int,
        explain_dir: Path | None,
        explain_top: int,
        progress: bool,
        workers: int,
    ) -> Iterator[Prediction]:
        """`_stream` for files and folders, with reading, decoding and the transform in DataLoader
        workers, so that the model never waits for the disk or the JPEG decoder."""
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(1 for _ in iter_image_paths(images)), unit="img", desc="predict")
        loader = torch.utils.data.DataLoader(
            _FileBatches(images, self.transform, batch_size, keep_images=explain_dir is not None),
            batch_size=None,  # the dataset yields whole batches
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
        )
        used_names: set[str] = set()
        try:
            for item in loader:
                for name, err in item["entries"]:
                    if err is not None:
                        _logger.warning("skipping %s", err)
                ok = [(name, img) for (name, err), img in zip(item["entries"], item["images"]) if err is None]
                results = self._run_batch(
                    ok, vocab, top, threshold, explain_dir, explain_top, used_names, pixels=item["pixels"]
                )
                for name, err in item["entries"]:
                    yield Prediction(name, error=err) if err is not None else next(results)
                if bar is not None:
                    bar.update(len(item["entries"]))
        finally:
            if bar is not None:
                bar.close()

    @torch.no_grad()
    def scores(self, images: Sequence["Image.Image"], labels: Sequence[str]) -> tuple[torch.Tensor, Any]:
        """Raw scores [B, K] and the model output (with patch weights) for PIL images."""
        vocab = self.vocabulary(labels)
        x = torch.stack([self.transform(im) for im in images]).to(self.device)  # [B, 3, H, W]
        out = self.model(x, vocab, return_weights=True)
        return out.logits.float().cpu(), out

    def _run_batch(
        self,
        batch: list[tuple[str, Any]],
        vocab: "LabelSet",
        top: int | None,
        threshold: float | None,
        explain_dir: Path | None,
        explain_top: int,
        used_names: set[str],
        *,
        pixels: torch.Tensor | None = None,
    ) -> Iterator[Prediction]:
        if pixels is None:
            pixels = torch.stack([self.transform(img) for _, img in batch])  # [B, 3, H, W]
        x = pixels.to(self.device, non_blocking=True)
        with torch.no_grad():
            out = self.model(x, vocab, return_weights=explain_dir is not None)
        logits = out.logits.float().cpu()  # [B, K]
        counts = out.counts.cpu() if out.counts is not None else None  # [B, K]
        for b, (name, img) in enumerate(batch):
            order = torch.argsort(logits[b], descending=True, stable=True).tolist()
            if top is not None:
                order = order[:top]
            if threshold is not None:
                order = [k for k in order if logits[b, k] >= threshold]
            pred = Prediction(name, [(vocab.names[k], float(logits[b, k])) for k in order])
            if counts is not None:
                pred.counts = {vocab.names[k]: int(counts[b, k]) for k in order}
            if explain_dir is not None and out.weights is not None:
                drawn = order[:explain_top] or torch.argsort(logits[b], descending=True, stable=True)[:1].tolist()
                path = self._explain(name, img, out.weights[b], logits[b], counts, b, drawn, vocab, explain_dir, used_names)
                pred.explanation = str(path)
            yield pred

    def _explain(
        self,
        name: str,
        img: "Image.Image",
        weights: torch.Tensor,
        logits: torch.Tensor,
        counts: torch.Tensor | None,
        b: int,
        drawn: list[int],
        vocab: "LabelSet",
        explain_dir: Path,
        used_names: set[str],
    ) -> Path:
        """Write the explanation PNG of one image: its patch weights [N, K] for the labels `drawn`."""
        from .viz import region_heatmaps

        w = weights.float().cpu()[:, drawn].numpy()  # [N, K] -> [N, L]
        cnt = [int(counts[b, k]) if counts is not None else int((w[:, i] > 0).sum()) for i, k in enumerate(drawn)]
        stem = Path(name).stem or "image"
        fname = f"{stem}.png"
        n = 1
        while fname in used_names:  # two inputs with the same file name in different folders
            fname = f"{stem}_{n}.png"
            n += 1
        used_names.add(fname)
        return region_heatmaps(
            np.asarray(img),
            w,
            [vocab.names[k] for k in drawn],
            [float(logits[k]) for k in drawn],
            cnt,
            explain_dir / fname,
            title=Path(name).name,
            crop_box=_center_crop_box(*img.size),
        )


def default_workers() -> int:
    """Image-reading processes of `iter_predict`: every core but the one feeding the model, at most 8."""
    return min(8, max(1, (os.cpu_count() or 1) - 1))


def _worth_workers(images: Sequence[Any], batch_size: int) -> bool:
    """Worker processes pay off for files and folders (not in-memory images) when more than one batch may come."""
    if not images or not all(isinstance(x, (str, Path)) for x in images):
        return False
    return len(images) > batch_size or any(Path(x).is_dir() for x in images)


class _FileBatches(torch.utils.data.IterableDataset):
    """Batches of image files, read and transformed where the iterator runs (a DataLoader worker).

    Worker w of W takes batches w, w + W, w + 2W, ... of the input order; the DataLoader asks its
    workers in turn, so the batches come back in input order. Each batch holds `batch_size` inputs:
    `entries` [(name, error or None)], `pixels` [n readable, 3, H, W] (None if none is), `images`
    (the PIL images when `keep_images`, for explanations; None entries otherwise).
    """

    def __init__(self, inputs: list[Any], transform: Any, batch_size: int, *, keep_images: bool) -> None:
        super().__init__()
        self.inputs, self.transform, self.batch_size, self.keep_images = inputs, transform, batch_size, keep_images

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        entries: list[tuple[str, str | None]] = []
        pixels: list[torch.Tensor] = []
        images: list[Any] = []
        for i, path in enumerate(iter_image_paths(self.inputs)):
            if (i // self.batch_size) % n_workers != worker:
                continue
            try:
                img = load_image(path)
                pixels.append(self.transform(img))
                images.append(img if self.keep_images else None)
                entries.append((str(path), None))
            except ValueError as e:
                images.append(None)
                entries.append((str(path), str(e)))
            if (i + 1) % self.batch_size == 0:
                yield self._batch(entries, pixels, images)
                entries, pixels, images = [], [], []
        if entries:
            yield self._batch(entries, pixels, images)

    @staticmethod
    def _batch(entries: list, pixels: list, images: list) -> dict[str, Any]:
        return {"entries": entries, "pixels": torch.stack(pixels) if pixels else None, "images": images}


def _as_rgb(image: Any, name: str) -> "Image.Image":
    """A PIL image given in memory, as RGB; raises ValueError for anything else."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise ValueError(f"{name}: expected a file path or a PIL image, got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")


def format_predictions(preds: Sequence[Prediction], fmt: str = "table") -> str:
    """Render predictions as a text table, JSON or CSV."""
    import io
    import json

    if fmt == "json":
        return json.dumps([p.to_dict() for p in preds], indent=2)
    if fmt == "csv":
        import csv

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", "rank", "label", "score", "patches", "error"])
        for p in preds:
            if p.error:
                w.writerow([p.source, "", "", "", "", p.error])
            for r, (n, s) in enumerate(p.labels, 1):
                w.writerow([p.source, r, n, f"{s:.6f}", p.counts.get(n, ""), ""])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; use table, json or csv")
    lines = []
    for p in preds:
        lines.append(p.source)
        if p.error:
            lines.append(f"  error: {p.error}")
        for r, (n, s) in enumerate(p.labels, 1):
            extra = f"  ({p.counts[n]} patch{'' if p.counts[n] == 1 else 'es'})" if n in p.counts else ""
            lines.append(f"  {r:>2}. {n:<30} {s:8.4f}{extra}")
        if p.explanation:
            lines.append(f"  explanation: {p.explanation}")
    return "\n".join(lines)
