"""Open-vocabulary tagging of real images: any vocabulary, ranked labels, decisions, and why.

`Recognizer` wraps a trained c2srt checkpoint, or plain CLIP weights for zero-shot use with the same
heads. The label embeddings and the category graph are computed once per vocabulary, not per batch.
An unreadable image gets a `Prediction` with `error` set (and a warning); it never ends the run.

Every returned label has its ranking score (the heads' fused score: it orders the labels of one
image, and its value depends on the rest of the vocabulary) and, when the model has a calibrator
(`c2srt.calibration`, stored in the checkpoint), its probability P(label present), computed from a
score normalised across nothing, so the same whatever else is in the vocabulary; a label is
`present` when its probability is at least the threshold (`DEFAULT_THRESHOLD`, 0.5). A checkpoint
without a calibrator says so once and ranks only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .config import ModelCfg
from .constants import DEFAULT_THRESHOLD, DEFAULT_TOP
from .images import center_crop_box, has_image_suffix, open_rgb
from .vocabulary import check_labels

if TYPE_CHECKING:
    from PIL import Image

    from .calibration import Calibrator
    from .graph import CategoryGraph
    from .model import C2SRT, LabelSet

_logger = logging.getLogger(__name__)

Neighbors = dict[str, list[tuple[str, float]]]  # label -> [(neighbour, edge strength)], strongest first


NO_CALIBRATOR = (
    "this model has no calibrator: its scores rank labels but are not probabilities, so there is no "
    "probability threshold (fit one with `c2srt calibrate`, or keep the best labels with --top)"
)


def keep_labels(
    ranked: Sequence[tuple[str, float]],
    top: int | None,
    threshold: float | None,
    probabilities: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """The labels to return from a ranking (best first): the `top` best, then those whose
    probability is at least `threshold` (those decided present).

    The one rule for `c2srt predict` and the web page's list; either limit may be None (no limit).

    Args:
        ranked: (label, ranking score), best first.
        top: keep the `top` best (None: all).
        threshold: a probability in [0, 1]; keep the labels with `probabilities[label] >= threshold`.
        probabilities: P(label present) per label (a calibrated model's).

    Raises:
        ValueError: a threshold without probabilities (`NO_CALIBRATOR`).

    Example:
        >>> keep_labels([("a", 2.1), ("b", 1.5), ("c", 0.1)], 2, 0.6, {"a": 0.9, "b": 0.55, "c": 0.2})
        [('a', 2.1)]
    """
    kept = list(ranked[: int(top)]) if top is not None else list(ranked)
    if threshold is None:
        return kept
    if probabilities is None:
        raise ValueError(NO_CALIBRATOR)
    return [(n, s) for n, s in kept if probabilities[n] >= threshold]


def check_threshold(threshold: Any, name: str = "threshold") -> float:
    """A probability threshold in [0, 1], as a float.

    Raises:
        ValueError: anything else (the message names `name`).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"{name} is a probability: it must lie in [0, 1], got {threshold!r}")
    return float(threshold)


@dataclass
class Prediction:
    """Everything a front end shows for one image: ranked labels with scores, decisions, and why.

    `error` is set, and there are no labels, when the image could not be read. Patch weights are
    filled only when asked (`return_weights=True`, for pictures); neighbours whenever the model has
    an IST module. Every per-label field covers exactly the returned `labels`.

    Per label: the ranking score (`labels`, `score`), and for a model with a calibrator its
    probability (`probability`) and whether it is present (`present`: probability >= `threshold`).
    Without a calibrator `threshold` is None, `probability` and `present` return None.
    """

    source: str
    labels: list[tuple[str, float]] = field(default_factory=list)  # (name, score), best first
    counts: dict[str, int] = field(default_factory=dict)  # ISR patches kept per returned label
    error: str | None = None
    explanation: str | None = None  # path of the explanation PNG, when asked
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # [N] patch weights per returned label, when asked
    neighbors: Neighbors = field(default_factory=dict)  # per returned label: its graph neighbours in the vocabulary
    crop_box: tuple[float, float, float, float] | None = None  # (left, top, right, bottom) px: what the model saw
    probabilities: dict[str, float] = field(default_factory=dict)  # P(label present) per returned label (calibrated models)
    threshold: float | None = None  # probability from which a label is present; None: no calibrator, ranking only

    @property
    def decided(self) -> bool:
        """Whether the labels carry probabilities and decisions (the model has a calibrator)."""
        return self.threshold is not None

    def probability(self, label: str) -> float | None:
        """P(label present) of a returned label; None when the model has no calibrator.

        Raises:
            ValueError: `label` is not among the returned labels.
        """
        self.score(label)  # a returned label, or the error
        return self.probabilities.get(label) if self.decided else None

    def present(self, label: str) -> bool | None:
        """Whether a returned label is decided present (probability >= `threshold`); None without a calibrator."""
        p = self.probability(label)
        return None if p is None or self.threshold is None else p >= self.threshold

    @property
    def present_labels(self) -> list[str]:
        """The returned labels decided present, best first ([] without a calibrator)."""
        return [n for n, _ in self.labels if self.present(n)]

    def score(self, label: str) -> float:
        """The score of a returned label.

        Raises:
            ValueError: `label` is not among the returned labels.
        """
        for name, s in self.labels:
            if name == label:
                return s
        raise ValueError(f"label {label!r} is not among the labels returned for {self.source}")

    def shown(self, top: int | None, threshold: float | None) -> list[tuple[str, float]]:
        """The returned labels a front end lists under its own `top` and probability `threshold`
        (see `keep_labels`); the threshold is ignored without a calibrator (nothing to compare)."""
        if not self.decided:
            return keep_labels(self.labels, top, None)
        return keep_labels(self.labels, top, threshold, self.probabilities)

    def to_dict(self) -> dict[str, Any]:
        """As `c2srt predict --format json` writes it: per label its score, its probability (null
        without a calibrator) and, with one, whether it is present; the threshold when decided."""
        d: dict[str, Any] = {"image": self.source, "labels": []}
        for n, s in self.labels:
            item: dict[str, Any] = {"label": n, "score": round(s, 6), "probability": None}
            if self.decided:
                item["probability"] = round(self.probabilities[n], 6)
                item["present"] = bool(self.present(n))
            d["labels"].append(item)
        if self.decided:
            d["threshold"] = self.threshold
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
                    if has_image_suffix(f):
                        yield Path(root) / f
        else:
            yield p  # a missing file is reported as an error by the loader, not here


#: most labels drawn per explanation picture
EXPLAIN_TOP = 3
#: images per forward pass
DEFAULT_BATCH_SIZE = 32


@dataclass
class PredictOptions:
    """How `Recognizer.iter_predict` runs, and what each `Prediction` carries; checked when made.

    Attributes:
        top: keep the K best labels per image (None: all).
        threshold: the probability from which a label is decided present (in [0, 1]; default
            `DEFAULT_THRESHOLD`, 0.5: present when more likely than not). Every returned label of
            a calibrated model carries its probability and `present`; pick another threshold for
            another balance of missed labels against wrong ones (higher: fewer, surer labels).
        present_only: return only the labels decided present (after `top`); needs a calibrator.
        batch_size: images per forward pass.
        explain_dir: write a PNG per image with the selected patches of its returned labels (at
            most `explain_top`; the best label when none is returned).
        explain_top: most labels drawn per explanation picture.
        progress: show a progress bar (tqdm, on stderr).
        return_weights: also return each returned label's patch weights (`Prediction.weights`, for
            pictures such as `viz.region_overlay`).
        workers: processes that read and transform image files while the model runs (None:
            `default_workers()`; 0: read them in this process). Used when the inputs are files or
            folders (not in-memory images) and more than one batch may come.

    Raises:
        ValueError: a bad `top`, `threshold`, `batch_size`, `explain_top` or `workers`, or an `explain_dir` that is a file.
    """

    top: int | None = DEFAULT_TOP
    threshold: float = DEFAULT_THRESHOLD
    present_only: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    explain_dir: str | Path | None = None
    explain_top: int = EXPLAIN_TOP
    progress: bool = False
    return_weights: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.top is not None and self.top < 1:
            raise ValueError(f"top must be >= 1, got {self.top}")
        self.threshold = check_threshold(self.threshold)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.explain_top < 1:
            raise ValueError(f"explain_top must be >= 1, got {self.explain_top}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.explain_dir is not None:
            self.explain_dir = Path(self.explain_dir)
            if self.explain_dir.exists() and not self.explain_dir.is_dir():
                raise ValueError(f"{self.explain_dir}: the explanation folder is a file")

    @property
    def need_weights(self) -> bool:
        """The model must return patch weights: asked for, or drawn in explanations."""
        return self.return_weights or self.explain_dir is not None


class Recognizer:
    """Tags images with any vocabulary.

    The vocabulary (label embeddings, and the category graph when IST is on) is prepared once and
    reused for every batch while the labels stay the same. With a `calibrator` (a checkpoint's, or
    one given) every label also gets its probability and a decision (`Prediction.present`).

    Example:
        >>> rec = Recognizer.from_checkpoint("runs/demo/full/model.safetensors")
        >>> pred = rec.predict(["photo.jpg"], ["dog", "frisbee", "grass"], top=3)[0]
        >>> pred.labels, pred.present_labels
        ([('dog', 0.71), ('grass', 0.52), ('frisbee', 0.33)], ['dog', 'grass'])
    """

    def __init__(
        self,
        model: "C2SRT",
        *,
        graph: "CategoryGraph | None" = None,
        device: str | torch.device = "cpu",
        calibrator: "Calibrator | None" = None,
    ) -> None:
        from .data.transforms import eval_resize
        from .model import eval_transform

        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._graph = graph
        self.calibrator = calibrator  # decision scores -> P(label present); None: ranking only
        self.transform = eval_transform(model)  # the model's own size, crop and pixel statistics
        self._resize = eval_resize(model.image_size, model.crop_pct)  # short side before the centre crop
        self._vocab: "LabelSet | None" = None
        self._vocab_graph: "tuple[tuple[str, ...], CategoryGraph] | None" = None
        self._neighbors: tuple[tuple[str, ...], Neighbors] | None = None

    def _crop_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of an image of `size` (width, height) the model sees (what `self.transform`
        keeps), in its pixels."""
        return center_crop_box(*size, resize=self._resize, crop=self.model.image_size)

    @property
    def graph(self) -> "CategoryGraph | None":
        """The base category graph (the checkpoint's, or one the user gave); extended on the fly."""
        return self._graph

    @graph.setter
    def graph(self, graph: "CategoryGraph | None") -> None:
        self._graph = graph
        self._vocab = None  # prepared vocabularies used the old graph
        self._vocab_graph = None
        self._neighbors = None
        self.model.eval()  # also drops the model's cache of graph-refined label embeddings

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Recognizer":
        """A trained c2srt checkpoint (weights, config, vocabulary, graph and calibrator in one file).

        A checkpoint without a calibrator says so once (one log line) and ranks only.
        """
        from .calibration import load_calibrator
        from .checkpoint import load_checkpoint
        from .graph import CategoryGraph

        model, info = load_checkpoint(path, device=device)
        graph = CategoryGraph.from_dict(info.graph, where=str(path)) if info.graph else None
        return cls(model, graph=graph, device=device, calibrator=load_calibrator(path))

    @classmethod
    def from_clip(
        cls,
        name: str,
        pretrained: str | None,
        *,
        head: str = "isr",
        device: str | torch.device = "cpu",
        calibrator: "Calibrator | None" = None,
    ) -> "Recognizer":
        """Plain CLIP weights, zero-shot, with the same heads (IST needs training, so it is off).

        No calibrator unless one is given (fitted on this model's decision scores, e.g. with
        `c2srt.calibration.fit_calibrator` on a few hundred labelled photos): it ranks only.
        """
        from .config import HeadCfg, IstCfg
        from .model import create_model

        cfg = ModelCfg(backbone=name, pretrained=pretrained, distill=False, head=HeadCfg(name=head), ist=IstCfg(mode="off"))
        return cls(create_model(cfg, device=device, teacher=False), device=device, calibrator=calibrator)

    # -------------------------------------------------------------------- vocabulary
    def vocabulary(self, labels: Sequence[str]) -> "LabelSet":
        """Embed a vocabulary (and build its graph) once; reused while the labels stay the same.

        Raises:
            ValueError: an empty vocabulary, an empty or duplicate label.
        """
        labels = check_labels(labels)
        if self._vocab is not None and self._vocab.names == labels:
            return self._vocab
        graph = self.graph_for(labels) if self.model.ist is not None else None
        with torch.no_grad():
            self._vocab = self.model.label_set(labels, graph)
        return self._vocab

    def graph_for(self, labels: Sequence[str]) -> "CategoryGraph":
        """The category graph for `labels`: the base graph, extended on the fly to labels it lacks.

        `c2srt.model.vocabulary_graph` (the one rule, also calibration's): a missing label gets edges
        from the vocabulary's labels the base graph has (embedding source, the model's own text
        embeddings, adaptive cut); the base graph's edges are kept as they are. Built once per vocabulary.
        """
        from .model import vocabulary_graph

        labels = list(labels)
        key = tuple(labels)
        if self._vocab_graph is not None and self._vocab_graph[0] == key:
            return self._vocab_graph[1]
        graph = vocabulary_graph(self.model, labels, self.graph)
        self._vocab_graph = (key, graph)
        return graph

    def neighbors(self, labels: Sequence[str]) -> Neighbors:
        """Per label, its neighbours in the category graph that are in the vocabulary (the only ones
        IST passes messages from), strongest first; {} when the model has no IST. Once per vocabulary.
        """
        labels = list(labels)
        if self.model.ist is None:
            return {}
        if self._neighbors is not None and self._neighbors[0] == tuple(labels):
            return self._neighbors[1]
        graph = self.graph_for(labels)
        vocab = set(labels)
        out: Neighbors = {}
        for name in labels:
            pairs = graph.neighbors(name) if name in graph else []
            pairs = [(n, float(w)) for n, w in pairs if n in vocab and n != name]
            out[name] = sorted(pairs, key=lambda p: (-p[1], p[0]))
        self._neighbors = (tuple(labels), out)
        return out

    # ----------------------------------------------------------------------- predict
    def predict(
        self, images: Sequence[Any] | str | Path, labels: Sequence[str], options: PredictOptions | None = None, **kwargs: Any
    ) -> list[Prediction]:
        """Ranked labels per image, in input order (see `iter_predict` for streaming and the arguments)."""
        return list(self.iter_predict(images, labels, options, **kwargs))

    def iter_predict(
        self, images: Sequence[Any] | str | Path, labels: Sequence[str], options: PredictOptions | None = None, **kwargs: Any
    ) -> Iterator[Prediction]:
        """Stream predictions batch by batch over files, folders and in-memory images, in input order.

        The options are checked and the vocabulary prepared when this is called; images are read
        lazily as the iterator is consumed. An unreadable image yields a `Prediction` with `error`
        set (and a warning in the log); it never ends the run.

        Args:
            images: image files and/or folders (searched recursively, sorted), or PIL images (named
                `image0`, `image1`, ... by position), in any mix.
            labels: the vocabulary.
            options: how to run and what to return (`PredictOptions`; default: its defaults).
            **kwargs: `PredictOptions` fields that override `options`, e.g. `top=3`, `threshold=0.7`,
                `present_only`, `batch_size`, `explain_dir`, `explain_top`, `progress`,
                `return_weights`, `workers`.

        Raises:
            ValueError: a bad option (see `PredictOptions`), `present_only` without a calibrator
                (`NO_CALIBRATOR`), or a bad vocabulary.
        """
        if isinstance(images, (str, Path)):
            images = [images]
        opts = dataclasses.replace(options or PredictOptions(), **kwargs)
        if opts.present_only and self.calibrator is None:
            raise ValueError(NO_CALIBRATOR)
        vocab = self.vocabulary(labels)
        images = list(images)
        workers = default_workers() if opts.workers is None else opts.workers
        return self._stream(images, vocab, opts, workers if _worth_workers(images, opts.batch_size) else 0)

    def _stream(self, images: list[Any], vocab: "LabelSet", opts: PredictOptions, workers: int) -> Iterator[Prediction]:
        """The one streaming path: inputs read and transformed batch by batch (in `workers` DataLoader
        processes, or in this one when 0, so the model never waits for the disk or the JPEG decoder),
        scored, and yielded in input order, unreadable ones in their place."""
        bar = None
        if opts.progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(1 for _ in _sources(images)), unit="img", desc="predict")  # names only: cheap
        loader = torch.utils.data.DataLoader(
            _Batches(images, self.transform, opts.batch_size, keep_images=opts.explain_dir is not None),
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
                results = self._run_batch(ok, vocab, opts, used_names, pixels=item["pixels"], sizes=item["sizes"])
                for name, err in item["entries"]:
                    yield Prediction(name, error=err) if err is not None else next(results)
                if bar is not None:
                    bar.update(len(item["entries"]))
        finally:
            if bar is not None:
                bar.close()

    def _run_batch(
        self,
        batch: list[tuple[str, Any]],
        vocab: "LabelSet",
        opts: PredictOptions,
        used_names: set[str],
        *,
        pixels: torch.Tensor | None,
        sizes: list[tuple[int, int]],
    ) -> Iterator[Prediction]:
        """Predictions for `batch` [(name, image or None)]: its `pixels` [n, 3, H, W] (None when the
        batch is empty) and the images' `sizes`; an image is kept only for an explanation."""
        if pixels is None:
            return
        x = pixels.to(self.device, non_blocking=True)
        decided = self.calibrator is not None
        with torch.no_grad():
            out = self.model(x, vocab, return_weights=opts.need_weights, decision=decided)
        logits = out.logits.float().cpu()  # [B, K]
        probs = self.calibrator(out.decision.float().cpu()) if decided else None  # [B, K] P(label present)
        counts = out.counts.cpu() if out.counts is not None else None  # [B, K]
        weights = out.weights.float().cpu() if out.weights is not None else None  # [B, N, K]
        names = vocab.names
        index = {n: k for k, n in enumerate(names)}
        neighbors = self.neighbors(names)
        for b, (name, img) in enumerate(batch):
            scores = logits[b].tolist()
            ranked = [(names[k], scores[k]) for k in torch.argsort(logits[b], descending=True, stable=True).tolist()]
            row_probs = dict(zip(names, probs[b].tolist())) if probs is not None else None
            kept = keep_labels(ranked, opts.top, opts.threshold if opts.present_only else None, row_probs)
            ks = [index[n] for n, _ in kept]
            pred = Prediction(name, kept, crop_box=self._crop_box(sizes[b]))
            if row_probs is not None:
                pred.probabilities = {n: row_probs[n] for n, _ in kept}
                pred.threshold = opts.threshold
            if counts is not None:
                pred.counts = {names[k]: int(counts[b, k]) for k in ks}
            if opts.return_weights and weights is not None:
                per_label = weights[b][:, ks].numpy().T  # [N, K] -> [L, N], a copy: the batch is not kept alive
                pred.weights = {names[k]: per_label[i] for i, k in enumerate(ks)}
            if neighbors:
                pred.neighbors = {n: neighbors[n] for n, _ in kept}
            if opts.explain_dir is not None and weights is not None:
                drawn = [index[n] for n, _ in (kept[: opts.explain_top] or ranked[:1])]  # the best label when none is kept
                row_counts = counts[b] if counts is not None else None
                path = self._explain(name, img, weights[b], scores, row_counts, drawn, names, opts.explain_dir, used_names)
                pred.explanation = str(path)
            yield pred

    def _explain(
        self,
        name: str,
        img: "Image.Image",
        weights: torch.Tensor,
        scores: list[float],
        counts: torch.Tensor | None,
        drawn: list[int],
        names: Sequence[str],
        explain_dir: Path,
        used_names: set[str],
    ) -> Path:
        """Write the explanation PNG of one image: its patch weights [N, K] for the labels `drawn`."""
        from .viz import region_heatmaps

        w = weights[:, drawn].numpy()  # [N, K] -> [N, L]
        cnt = [int(counts[k]) if counts is not None else int((w[:, i] > 0).sum()) for i, k in enumerate(drawn)]
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
            [names[k] for k in drawn],
            [scores[k] for k in drawn],
            cnt,
            explain_dir / fname,
            title=Path(name).name,
            crop_box=self._crop_box(img.size),
        )


def default_workers() -> int:
    """Image-reading processes of `iter_predict`: every usable core but the one feeding the model, at most 8."""
    from .data.check import default_workers as usable_cpus  # the CPUs this process may use

    return min(8, max(1, usable_cpus() - 1))


def _worth_workers(images: Sequence[Any], batch_size: int) -> bool:
    """Worker processes pay off for files and folders (not in-memory images) when more than one batch may come."""
    if not images or not all(isinstance(x, (str, Path)) for x in images):
        return False
    return len(images) > batch_size or any(Path(x).is_dir() for x in images)


def _sources(inputs: list[Any]) -> Iterator[tuple[str, Any]]:
    """(name, source) of every input in order: an image file (a `Path`), or an in-memory image named by position."""
    for i, item in enumerate(inputs):
        if isinstance(item, (str, Path)):
            for path in iter_image_paths([item]):
                yield str(path), path
        else:
            yield f"image{i}", item


class _Batches(torch.utils.data.IterableDataset):
    """Batches of inputs (files or in-memory images), read and transformed where the iterator runs:
    a DataLoader worker, or this process.

    Worker w of W takes batches w, w + W, w + 2W, ... of the input order; the DataLoader asks its
    workers in turn, so the batches come back in input order. Each batch holds `batch_size` inputs:
    `entries` [(name, error or None)], `pixels` [n readable, 3, H, W] (None if none is), `sizes`
    (of the readable ones), `images` (the PIL images when `keep_images`, for explanations; None
    entries otherwise).
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
        sizes: list[tuple[int, int]] = []
        for i, (name, src) in enumerate(_sources(self.inputs)):
            if (i // self.batch_size) % n_workers != worker:
                continue
            try:
                img = open_rgb(src) if isinstance(src, Path) else _as_rgb(src, name)
                pixels.append(self.transform(img))
                images.append(img if self.keep_images else None)
                sizes.append(img.size)
                entries.append((name, None))
            except ValueError as e:  # ImageReadError (a file), or an object that is no image
                images.append(None)
                entries.append((name, str(e)))
            if (i + 1) % self.batch_size == 0:
                yield self._batch(entries, pixels, images, sizes)
                entries, pixels, images, sizes = [], [], [], []
        if entries:
            yield self._batch(entries, pixels, images, sizes)

    @staticmethod
    def _batch(entries: list, pixels: list, images: list, sizes: list) -> dict[str, Any]:
        """`images` and `entries` hold every input; `pixels` and `sizes` the readable ones only."""
        return {"entries": entries, "pixels": torch.stack(pixels) if pixels else None, "images": images, "sizes": sizes}


def _as_rgb(image: Any, name: str) -> "Image.Image":
    """A PIL image given in memory, as RGB; raises ValueError for anything else."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise ValueError(f"{name}: expected a file path or a PIL image, got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")
