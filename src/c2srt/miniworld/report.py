"""What the mini-world is and what the stand-in sees: the world report and the localisation probe.

The world report measures, on the fine-tuning split, each label's frequency, mean area and its
strongest co-occurring seen labels, and classifies every unseen label as small or large and as
correlated or not by the rules fixed in docs/MINIWORLD.md. The localisation probe measures how
often a present label's best-matching patch token lies on the label (a pointing game), against
the chance of a random patch doing so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..constants import DEFAULT_TEMPLATE, POSITIVE
from .captions import SYNONYMS
from .world import REGIONS, SHAPES, UNSEEN_GROUPS, MiniWorld

if TYPE_CHECKING:  # pragma: no cover
    from ..backbone import ClipBundle
    from ..graph import CategoryGraph
    from ..graph.cooccurrence import Cooccurrence

_logger = logging.getLogger(__name__)

# Rules fixed before any ablation result was read (docs/MINIWORLD.md, "Label groups").
SMALL_AREA = 0.05  # a label is small when its mean area (fraction of the image, when present) is below this
CORRELATED_LIFT = 2.0  # correlated: some seen label s with P(u, s) / (P(u) P(s)) >= this ...
CORRELATED_COND = 0.5  # ... and P(s | u) >= this (s is there at least half the time u is)
TOP_COOCCURRING = 3  # seen labels listed per label in the report
REPORT_SCENES = 1000  # fine-tuning scenes the report measures
REPORT_WEB = 2000  # web captions the report reads
HIT_COVER = 0.1  # a patch lies on a label when the label covers at least this fraction of it
PROBE_SCENES = 500


def _kind(name: str) -> str:
    return "region" if name in REGIONS else "shape" if name in SHAPES else "thing"


def world_cooccurrence(world: MiniWorld, *, n: int = REPORT_SCENES, split: str = "train") -> "Cooccurrence":
    """Label counts of `n` scenes of a split, unseen labels included (the world's own statistics)."""
    from ..graph.cooccurrence import Cooccurrence

    scenes = world.sample_target(n, split)
    assert scenes.labels is not None
    return Cooccurrence.from_matrix(world.label_names, scenes.labels == POSITIVE)


def oracle_graph(world: MiniWorld, *, n: int = REPORT_SCENES, max_neighbors: int | None = None) -> "CategoryGraph":
    """The graph of the world's true co-occurrence edges, counted on its fine-tuning scenes with the
    unseen labels' annotations (which no method may see): an upper bound for graphs built from
    names, never a graph to train with (docs/MINIWORLD.md, change 5)."""
    from ..graph.cooccurrence import cooccurrence_graph

    stats = world_cooccurrence(world, n=n)
    note = {"oracle": f"true co-occurrence of {n} fine-tuning scenes of world {world.seed}, unseen labels included (an upper bound)"}
    return cooccurrence_graph(stats, seen=world.seen_names, max_neighbors=max_neighbors, provenance=note)


def world_report(world: MiniWorld, *, n: int = REPORT_SCENES, n_web: int = REPORT_WEB) -> dict[str, Any]:
    """Per-label statistics of the fine-tuning split and of web captions, and the unseen groups.

    Returns:
        {"labels": [per label: label, split, kind, frequency, area, size ("small"/"large"),
        cooccurring (the top seen labels with P(s|u) and lift), correlated, web_mentions (share of
        web captions naming it by any synonym)], "groups": {group: labels by the measured rules},
        "designed_groups": UNSEEN_GROUPS, "scenes": n, "labels_per_scene": mean}.
    """
    scenes = world.sample_target(n, "train")
    assert scenes.labels is not None
    pos = scenes.labels == POSITIVE  # [n, K]
    freq = pos.mean(0)  # [K]
    joint = (pos[:, :, None] & pos[:, None, :]).mean(0)  # [n, K, 1] & [n, 1, K] -> [K, K]
    seen = world.seen_mask.numpy()
    _, captions = world.sample_web(n_web)
    lowered = [c.lower() for c in captions]
    rows = []
    for k, name in enumerate(world.label_names):
        count = int(pos[:, k].sum())
        area = float(scenes.areas[pos[:, k], k].mean()) if count else 0.0
        co = []
        for s in np.flatnonzero(seen):
            if s == k or joint[k, s] == 0:
                continue
            cond = joint[k, s] / max(freq[k], 1e-12)  # P(s | u)
            lift = joint[k, s] / max(freq[k] * freq[s], 1e-12)
            co.append({"label": world.label_names[s], "p_given": round(float(cond), 3), "lift": round(float(lift), 2)})
        co.sort(key=lambda r: (-(r["lift"] if r["p_given"] >= CORRELATED_COND else 0), -r["p_given"]))
        correlated = any(r["lift"] >= CORRELATED_LIFT and r["p_given"] >= CORRELATED_COND for r in co)
        mentions = float(np.mean([any(w in c for w in SYNONYMS[name]) for c in lowered]))
        rows.append(
            {
                "label": name,
                "split": "seen" if seen[k] else "unseen",
                "kind": _kind(name),
                "frequency": round(float(freq[k]), 4),
                "area": round(area, 4),
                "size": "small" if area < SMALL_AREA else "large",
                "cooccurring": co[:TOP_COOCCURRING],
                "correlated": bool(correlated),
                "web_mentions": round(mentions, 4),
            }
        )
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r["split"] == "unseen":
            groups.setdefault(f"{r['size']}, {'correlated' if r['correlated'] else 'uncorrelated'}", []).append(r["label"])
    return {
        "labels": rows,
        "groups": groups,
        "designed_groups": {g: list(v) for g, v in UNSEEN_GROUPS.items()},
        "scenes": n,
        "labels_per_scene": round(float(pos.sum(1).mean()), 2),
        "rules": {"small_area": SMALL_AREA, "correlated_lift": CORRELATED_LIFT, "correlated_p_given": CORRELATED_COND},
    }


def plot_world_report(report: dict[str, Any], out: str | Path) -> Path:
    """Each label's mean area against its frequency; unseen labels marked by group."""
    from ..viz import new_figure, save_picture

    fig = new_figure(figsize=(8, 6))
    ax = fig.subplots()
    colours = {"small, correlated": "tab:red", "large, correlated": "tab:orange", "small, uncorrelated": "tab:blue", "large, uncorrelated": "tab:purple"}
    for r in report["labels"]:
        group = f"{r['size']}, {'correlated' if r['correlated'] else 'uncorrelated'}"
        unseen = r["split"] == "unseen"
        ax.scatter(r["area"], r["frequency"], s=40 if unseen else 18, c=colours[group] if unseen else "0.6", marker="o" if unseen else ".")
        ax.annotate(r["label"], (r["area"], r["frequency"]), fontsize=7, xytext=(3, 2), textcoords="offset points", color="k" if unseen else "0.45")
    ax.set_xscale("log")
    ax.axvline(report["rules"]["small_area"], color="0.7", lw=0.8, ls="--")
    for group, colour in colours.items():
        ax.scatter([], [], c=colour, label=f"unseen: {group}")
    ax.scatter([], [], c="0.6", marker=".", label="seen")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("mean area when present (fraction of the image, log scale)")
    ax.set_ylabel("frequency (share of fine-tuning scenes)")
    ax.set_title(f"mini-world labels ({report['scenes']} fine-tuning scenes)")
    return save_picture(fig, out)


def _grid(bundle: "ClipBundle") -> int:
    visual = bundle.model.visual
    return int(visual.grid_size[0])


@torch.no_grad()
def probe_stand_in(bundle: "ClipBundle", world: MiniWorld, *, n: int = PROBE_SCENES, template: str = DEFAULT_TEMPLATE, batch_size: int = 256) -> dict[str, Any]:
    """Zero-shot mAP (global embedding) and the pointing game of a CLIP on held-out benchmark scenes.

    The scenes come from the "val" stream: never fine-tuned on, never tested on.

    Pointing game: for every present label, the patch token most similar to the label's prompt;
    a hit when the label covers at least HIT_COVER of that patch. Chance: the share of patches a
    label covers that much, averaged over the same (scene, label) pairs.

    Returns:
        Fractions: {"zero_shot_map": {"all", "seen", "unseen"}, "pointing": {"all", "small",
        "large", "seen", "unseen"}, "chance": (same keys), "scenes": n}.
    """
    from ..metrics import mean_average_precision
    from .pretrain import patch_embeddings, to_model_input

    model = bundle.model.eval()
    grid = _grid(bundle)
    scenes = world.sample_target(n, "val", grid=grid)
    assert scenes.labels is not None and scenes.cover is not None
    text = F.normalize(model.encode_text(bundle.tokenizer([template.format(c) for c in world.label_names])), dim=-1)  # [K, D]
    glob, best = [], []
    for start in range(0, n, batch_size):
        x = to_model_input(scenes.images[start : start + batch_size], bundle)
        raw = patch_embeddings(model.visual, x)  # [b, N, D]
        glob.append(torch.einsum("bd,kd->bk", F.normalize(raw.mean(1), dim=-1), text))  # [b, K]
        sim = torch.einsum("bnd,kd->bkn", F.normalize(raw, dim=-1), text)  # [b, K, N]
        best.append(sim.argmax(-1))  # [b, K]
    scores = torch.cat(glob).numpy()
    best_patch = torch.cat(best).numpy()  # [n, K]
    seen = world.seen_mask.numpy()
    y = scenes.labels
    on = scenes.cover.reshape(n, world.num_labels, -1) >= HIT_COVER  # [n, K, G*G]
    pos = y == POSITIVE
    hit = np.take_along_axis(on, best_patch[:, :, None], axis=2)[:, :, 0]  # [n, K]
    chance = on.mean(-1)  # [n, K]
    report = world_sizes(world, scenes)
    small = np.array([report[name] for name in world.label_names])  # [K] True when small
    groups = {"all": np.ones_like(seen), "small": small, "large": ~small, "seen": seen, "unseen": ~seen}
    pointing, base = {}, {}
    for g, cols in groups.items():
        sel = pos & cols[None, :]
        pointing[g] = float(hit[sel].mean()) if sel.any() else float("nan")
        base[g] = float(chance[sel].mean()) if sel.any() else float("nan")
    return {
        "zero_shot_map": {
            "all": mean_average_precision(scores, y),
            "seen": mean_average_precision(scores[:, seen], y[:, seen]),
            "unseen": mean_average_precision(scores[:, ~seen], y[:, ~seen]),
        },
        "pointing": pointing,
        "chance": base,
        "scenes": n,
        "template": template,
    }


def world_sizes(world: MiniWorld, scenes: Any = None) -> dict[str, bool]:
    """Label -> True when small (mean area below SMALL_AREA), measured on `scenes` (default: 500 train scenes)."""
    if scenes is None:
        scenes = world.sample_target(500, "train")
    pos = scenes.labels == POSITIVE
    return {
        name: bool(pos[:, k].any() and scenes.areas[pos[:, k], k].mean() < SMALL_AREA)
        for k, name in enumerate(world.label_names)
    }

