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
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e.__class__.__name__}: {e})") from e


class Recognizer:
    """Tags images with any vocabulary.

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
        self.graph = graph
        self.transform = build_transform(model.image_size, model.mean, model.std, train=False, rand_augment=False)
        self._vocab: "LabelSet | None" = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Recognizer":
        """A trained c2srt checkpoint (weights, config, vocabulary and graph in one file)."""
        from .checkpoint import load_checkpoint
        from .graph import CategoryGraph

        model, info = load_checkpoint(path, device=device)
        graph = CategoryGraph.from_dict(info.graph) if info.graph else None
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
        """Embed a vocabulary (and build its graph) once; reused while the labels stay the same."""
        labels = [s.strip() for s in labels]
        if not labels or any(not s for s in labels):
            raise ValueError("the vocabulary is empty or has an empty label")
        if self._vocab is not None and self._vocab.names == labels:
            return self._vocab
        graph = None
        if self.model.ist is not None:
            graph = self._graph_for(labels)
        with torch.no_grad():
            self._vocab = self.model.label_set(labels, graph)
        return self._vocab

    def _graph_for(self, labels: list[str]) -> "CategoryGraph":
        """The checkpoint's graph, extended on the fly (embedding source) to labels it lacks."""
        from .graph import build_graph

        known = set(self.graph.labels) if self.graph is not None else set()
        if self.graph is not None and all(n in known for n in labels):
            return self.graph
        _logger.info("building a category graph for %d labels (embedding source)", len(labels))

        def encode(names: list[str]) -> np.ndarray:
            with torch.no_grad():
                return self.model.label_encoder.encode_labels(names).float().cpu().numpy()

        seen = sorted(known & set(labels)) if known else None
        return build_graph(labels, seen=seen, source="embedding", encoder=encode)

    # ----------------------------------------------------------------------- predict
    def predict(
        self,
        images: Sequence[str | Path] | str | Path,
        labels: Sequence[str],
        *,
        top: int | None = 5,
        threshold: float | None = None,
        batch_size: int = 32,
        explain_dir: str | Path | None = None,
        explain_top: int = 3,
        progress: bool = False,
    ) -> list[Prediction]:
        """Ranked labels per image, in input order (see `iter_predict` for streaming)."""
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
            )
        )

    def iter_predict(
        self,
        images: Sequence[str | Path] | str | Path,
        labels: Sequence[str],
        *,
        top: int | None = 5,
        threshold: float | None = None,
        batch_size: int = 32,
        explain_dir: str | Path | None = None,
        explain_top: int = 3,
        progress: bool = False,
    ) -> Iterator[Prediction]:
        """Stream predictions batch by batch over files and folders.

        Args:
            images: image files and/or folders (searched recursively), or PIL images.
            labels: the vocabulary.
            top: keep the K best labels per image (None: all).
            threshold: keep labels scoring at least this (applied after `top`).
            batch_size: images per forward pass.
            explain_dir: write a PNG per image with the ISR regions of its `explain_top` best labels.
            progress: show a progress bar.
        """
        if isinstance(images, (str, Path)):
            images = [images]
        if top is not None and top < 1:
            raise ValueError(f"--top must be >= 1, got {top}")
        vocab = self.vocabulary(labels)
        pil_inputs = [im for im in images if not isinstance(im, (str, Path))]
        sources: Iterable[Any] = pil_inputs if pil_inputs else iter_image_paths(images)  # type: ignore[arg-type]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(unit="img", desc="predict")
        batch: list[tuple[str, Any]] = []
        for i, src in enumerate(sources):
            name = str(src) if isinstance(src, (str, Path)) else f"image{i}"
            try:
                img = src if not isinstance(src, (str, Path)) else load_image(src)
            except ValueError as e:
                _logger.warning("skipping %s", e)
                yield Prediction(name, error=str(e))
                continue
            batch.append((name, img))
            if len(batch) == batch_size:
                yield from self._run_batch(batch, vocab, top, threshold, explain_dir, explain_top)
                if bar is not None:
                    bar.update(len(batch))
                batch = []
        if batch:
            yield from self._run_batch(batch, vocab, top, threshold, explain_dir, explain_top)
            if bar is not None:
                bar.update(len(batch))
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
        explain_dir: str | Path | None,
        explain_top: int,
    ) -> Iterator[Prediction]:
        x = torch.stack([self.transform(img) for _, img in batch]).to(self.device)  # [B, 3, H, W]
        with torch.no_grad():
            out = self.model(x, vocab, return_weights=explain_dir is not None)
        logits = out.logits.float().cpu()
        counts = out.counts.cpu() if out.counts is not None else None
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
                pred.explanation = str(self._explain(name, img, x[b], out.weights[b], logits[b], counts, b, vocab, explain_dir, explain_top))
            yield pred

    def _explain(self, name, img, x, weights, logits, counts, b, vocab, explain_dir, explain_top) -> Path:  # noqa: ANN001
        from .viz import region_heatmaps

        top = torch.argsort(logits, descending=True, stable=True)[:explain_top].tolist()
        mean = torch.tensor(self.model.mean).view(3, 1, 1)
        std = torch.tensor(self.model.std).view(3, 1, 1)
        shown = ((x.cpu() * std + mean).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()  # [3,H,W] -> [H,W,3]
        w = weights.float().cpu()[:, top].numpy()  # [N, K] -> [N, L]
        cnt = [int(counts[b, k]) if counts is not None else 0 for k in top]
        stem = Path(name).stem if name else "image"
        out = Path(explain_dir) / f"{stem}.png"
        n = 1
        while out.exists():  # two inputs with the same file name in different folders
            out = Path(explain_dir) / f"{stem}_{n}.png"
            n += 1
        return region_heatmaps(shown, w, [vocab.names[k] for k in top], [float(logits[k]) for k in top], cnt, out, title=Path(name).name)


def format_predictions(preds: Sequence[Prediction], fmt: str = "table") -> str:
    """Render predictions as a text table, JSON or CSV."""
    import io
    import json

    if fmt == "json":
        return json.dumps([p.to_dict() for p in preds], indent=2)
    if fmt == "csv":
        import csv

        buf = io.StringIO()
        w = csv.writer(buf)
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
            extra = f"  ({p.counts[n]} patches)" if n in p.counts else ""
            lines.append(f"  {r:>2}. {n:<30} {s:8.4f}{extra}")
        if p.explanation:
            lines.append(f"  explanation: {p.explanation}")
    return "\n".join(lines)
