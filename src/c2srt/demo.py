"""`c2srt demo`: the whole method end to end on the mini-world, offline, on a laptop CPU.

Generates the scenes, pretrains (or loads) the tiny CLIP stand-in, builds the category graph with
the local LLM, fine-tunes every ablation on seen labels only, and prints the table the paper's
readers know (ZSL and GZSL mAP, F1@3, F1@5), with results as JSON and pictures beside them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Cfg, merge_config
from .constants import POSITIVE

_logger = logging.getLogger(__name__)

ZERO_SHOT = "CLIP zero-shot"
PICTURE_IMAGES = 4  # test scenes drawn with their selected regions
PICTURE_LABELS = 7  # most labels drawn per scene
TABLE_COLUMNS = ("zsl/mAP", "zsl/F1@3", "zsl/F1@5", "gzsl/mAP", "gzsl/F1@3", "gzsl/F1@5")


def default_cache_dir() -> Path:
    return Path(os.environ.get("C2SRT_CACHE", Path.home() / ".cache" / "c2srt"))


def load_demo_spec() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((resources.files("c2srt") / "presets" / "demo.yaml").read_text())


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def _deep_update(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def demo_configs(
    output_dir: Path, *, quick: bool, seed: int, pretrained: str, graph_path: str | None
) -> list[tuple[str, Cfg]]:
    """The resolved config of every trained variant of the demo table."""
    spec = load_demo_spec()
    base = spec["base"]
    if quick:
        base = _deep_update(base, spec.get("quick", {}))
    rows = []
    for variant in spec["variants"]:
        v = {k: val for k, val in variant.items() if k != "name"}
        data = _deep_update(base, v)
        data = _deep_update(
            data,
            {
                "seed": seed,
                "output_dir": str(output_dir / _slug(variant["name"]) / f"seed{seed}"),
                "model": {"pretrained": pretrained},
                "data": {"options": {"seed": seed}},
                "graph": {"path": graph_path},
            },
        )
        rows.append((variant["name"], merge_config(Cfg(), data)))
    return rows


@torch.no_grad()
def zero_shot_results(cfg: Cfg) -> dict[str, float]:
    """The "CLIP zero-shot" row: the pretrained tower's cos(g, t), no fine-tuning."""
    from .data.base import build_dataset
    from .data.transforms import build_transform
    from .evaluate import StreamingEvaluator
    from .model import create_model

    model = create_model(dataclasses.replace(cfg.model, distill=False, ist=dataclasses.replace(cfg.model.ist, mode="off")), teacher=False).eval()
    tf = build_transform(model.image_size, model.mean, model.std, train=False, rand_augment=False)
    ds = build_dataset(cfg.data, "test", tf)
    names = list(ds.label_names)
    seen = np.asarray(ds.seen_mask, dtype=bool)
    ev = StreamingEvaluator(
        protocol=cfg.eval.protocol, seen_mask=seen, unseen_mask=~seen, topk=tuple(cfg.eval.topk), empty=cfg.eval.empty
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False)
    labels = model.label_set(names)
    for batch in loader:
        ev.update(model.zero_shot(batch["image"], labels), batch["target"])
    return ev.compute()


def prepare_graph_file(cfg: Cfg, cache_dir: Path, source: str) -> Path:
    """Build the mini-world category graph once per vocabulary and source; cached."""
    from .data.base import build_dataset
    from .graph import CategoryGraph, build_graph

    ds = build_dataset(cfg.data, "test", None)
    names = list(ds.label_names)
    seen = [n for n, s in zip(names, np.asarray(ds.seen_mask, dtype=bool)) if s]
    key = hashlib.sha256(json.dumps([names, seen, source, cfg.graph.candidates, cfg.graph.max_neighbors]).encode()).hexdigest()[:12]
    path = cache_dir / f"miniworld-graph-{source}-{key}.json"
    if path.is_file():
        CategoryGraph.load(path)  # validates
        return path
    t0 = time.time()
    graph = build_graph(
        names,
        seen=seen,
        source=source,
        candidates=cfg.graph.candidates,
        max_neighbors=cfg.graph.max_neighbors,
        cache_dir=cache_dir,
        progress=True,
    )
    graph.save(path)
    _logger.info("category graph (%s) for %d labels built in %.0f s", source, len(names), time.time() - t0)
    return path


def _column_title(column: str) -> str:
    """"gzsl/mAP" -> "GZSL mAP" (the protocol block in capitals, the metric as it is)."""
    block, metric = column.split("/", 1)
    return f"{block.upper()} {metric}"


def format_demo_table(rows: dict[str, dict[str, tuple[float, float]]], seeds: list[int]) -> str:
    """Markdown table in percent: mean (and std over seeds when there are several).

    `rows` holds fractions in [0, 1] (what the evaluator reports); the table shows them x 100.
    """
    header = "| method | " + " | ".join(_column_title(c) for c in TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    for name, figs in rows.items():
        cells = []
        for c in TABLE_COLUMNS:
            mean, std = figs.get(c, (float("nan"), 0.0))
            mean, std = 100 * mean, 100 * std
            cells.append(f"{mean:.1f} ± {std:.1f}" if len(seeds) > 1 else f"{mean:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _aggregate(per_seed: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for name, results in per_seed.items():
        out[name] = {}
        for c in TABLE_COLUMNS:
            vals = np.array([r[c] for r in results if c in r], dtype=float)
            out[name][c] = (float(vals.mean()), float(vals.std())) if len(vals) else (float("nan"), 0.0)
    return out


def run_demo(
    output_dir: Path = Path("runs/demo"),
    *,
    quick: bool = False,
    seeds: list[int] | None = None,
    cache_dir: Path | None = None,
    graph_source: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the mini-world benchmark; returns {"table": markdown, "results": per method, ...}."""
    from .data.miniworld import MiniWorld
    from .io import atomic_write_text, write_json
    from .pretrain import load_or_pretrain
    from .train import fit

    t_start = time.time()
    seeds = list(seeds or [0])
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.time()
    world = MiniWorld(seed=0)
    ckpt, meta = load_or_pretrain(world, cache_dir, quick=quick)
    timings["pretrain_or_load_s"] = time.time() - t0

    probe = demo_configs(output_dir, quick=quick, seed=seeds[0], pretrained=str(ckpt), graph_path=None)[0][1]
    source = graph_source or probe.graph.source
    t0 = time.time()
    graph_path = prepare_graph_file(probe, cache_dir, source)
    timings["graph_s"] = time.time() - t0

    per_seed: dict[str, list[dict[str, float]]] = {ZERO_SHOT: []}
    curves: dict[str, Path] = {}
    full_model: Path | None = None
    for seed in seeds:
        variants = demo_configs(output_dir, quick=quick, seed=seed, pretrained=str(ckpt), graph_path=str(graph_path))
        t0 = time.time()
        per_seed[ZERO_SHOT].append(zero_shot_results(variants[0][1]))
        timings[f"zero_shot_seed{seed}_s"] = time.time() - t0
        for name, cfg in variants:
            t0 = time.time()
            _logger.info("demo: training %s (seed %d)", name, seed)
            export = fit(cfg, progress=progress)
            results = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
            per_seed.setdefault(name, []).append(results)
            timings[f"{_slug(name)}_seed{seed}_s"] = time.time() - t0
            # the demo never resumes: drop Lightning's resumable checkpoints (tens of MB each),
            # and keep the exported models of the first seed only
            shutil.rmtree(Path(cfg.output_dir) / "checkpoints", ignore_errors=True)
            if seed == seeds[0]:
                curves[name] = Path(cfg.output_dir) / "logs" / "metrics.csv"
                full_model = export
            else:
                export.unlink(missing_ok=True)
    rows = _aggregate(per_seed)
    table = format_demo_table(rows, seeds)
    timings["total_s"] = time.time() - t_start
    report = {
        "table": table,
        "seeds": seeds,
        "quick": quick,
        "graph": str(graph_path),
        "graph_source": source,
        "pretrained": str(ckpt),
        "pretrain_meta": meta,
        "results": {k: {c: {"mean": m, "std": s} for c, (m, s) in v.items()} for k, v in rows.items()},
        "per_seed": per_seed,
        "timings_s": timings,
    }
    write_json(output_dir / "results.json", report)
    atomic_write_text(output_dir / "results.md", table + "\n")
    _pictures(output_dir, curves, full_model, variants[-1][1], graph_path)
    print(table)
    print(f"\nresults: {output_dir / 'results.json'}; pictures: {output_dir}/*.png; total {timings['total_s']:.0f} s")
    return report


def _pictures(output_dir: Path, curves: dict[str, Path], model_path: Path | None, cfg: Cfg, graph_path: Path) -> None:
    """Learning curves of every variant, selected regions of a few test images, the graph."""
    from .viz import plot_multi_curves

    try:
        plot_multi_curves({k: v for k, v in curves.items() if v.is_file()}, output_dir / "curves.png")
    except (OSError, ValueError, KeyError) as e:
        _logger.warning("no learning-curve picture: %s", e)
    try:
        from .graph import CategoryGraph
        from .graph.draw import draw_graph

        draw_graph(CategoryGraph.load(graph_path), output_dir / "graph.png")
    except (OSError, ValueError, ImportError) as e:
        _logger.warning("no graph picture: %s", e)
    if model_path is not None and model_path.is_file():
        region_pictures(model_path, cfg, output_dir / "regions")


def _picture_indices(labels: np.ndarray, seen: np.ndarray, n: int) -> list[int]:
    """Test scenes worth drawing: the first `n` with an unseen label and at least 4 labels."""
    pos = labels == POSITIVE  # [M, K]
    good = np.flatnonzero((pos[:, ~seen].any(1)) & (pos.sum(1) >= 4))
    rest = [i for i in range(len(labels)) if i not in set(good[:n].tolist())]
    return (good[:n].tolist() + rest)[:n]


@torch.no_grad()
def region_pictures(model_path: Path, cfg: Cfg, out_dir: Path, *, n_images: int = PICTURE_IMAGES) -> list[Path]:
    """Per-label selected patches of a fine-tuned model on a few test scenes, one PNG per scene.

    Each scene's panels are its true labels (unseen ones marked), with the patches the region head
    pooled for that label (ISR: a number that adapts to the label; MKT: always k) and the score.
    """
    from .checkpoint import load_checkpoint
    from .data.base import build_dataset
    from .data.transforms import build_transform
    from .graph import CategoryGraph
    from .viz import region_heatmaps

    model, info = load_checkpoint(model_path)
    tf = build_transform(model.image_size, model.mean, model.std, train=False, rand_augment=False)
    ds = build_dataset(cfg.data, "test", tf)
    names = list(ds.label_names)
    seen = np.asarray(ds.seen_mask, dtype=bool)
    graph = CategoryGraph.from_dict(info.graph) if info.graph is not None else None
    labels = model.label_set(names, graph if model.ist is not None else None)
    idx = _picture_indices(ds.targets.numpy(), seen, n_images)
    x = torch.stack([ds[i]["image"] for i in idx])  # [n, 3, H, W]
    out = model(x, labels, return_weights=True)
    paths = []
    for row, i in enumerate(idx):
        present = [k for k in range(len(names)) if int(ds[i]["target"][k]) == POSITIVE]
        present = sorted(present, key=lambda k: bool(seen[k]))[:PICTURE_LABELS]  # unseen labels are never cut
        rank = torch.argsort(out.logits[row], descending=True).tolist()
        drawn = [f"{names[k]}{'' if seen[k] else ' (unseen)'}: rank {rank.index(k) + 1}" for k in present]
        scores = [float(out.logits[row, k]) for k in present]
        paths.append(
            region_heatmaps(
                np.asarray(ds.pil_image(i)),
                out.weights[row][:, present].numpy(),  # [N, K] -> [N, L]
                drawn,
                scores,
                [int(out.counts[row, k]) for k in present],
                out_dir / f"test{i}.png",
                title=f"test scene {i}: its true labels, ranked among all {len(names)}",
            )
        )
    return paths
