"""`c2srt demo`: the paper's ablation on the mini-world, offline, on a laptop CPU, with its uncertainty.

One run: the shipped (or cached, or rebuilt) CLIP stand-in and category graph, the world report,
then per seed two zero-shot rows and six fine-tuned rows (seen labels only; `controls` adds the
rows that split IST's gain into its parts: its scoring rule alone, no edges, random edges, the
oracle's edges), each scored on the test scenes in two passes: ZSL over the unseen labels alone,
GZSL over all labels. Over several seeds every figure gets a mean and a 95 % t-interval, every row
a paired difference against the reference row (MKT + distill), each of demo.yaml's `parts` a
paired difference between its two rows, and ZSL mAP a breakdown by label group (small / large,
correlated / uncorrelated: docs/MINIWORLD.md). Tag decisions (a second table): each row's calibrated
probabilities on the test scenes, from the same image pass, for the seen and the unseen labels (ECE,
Brier, F1 at 0.5 beside the oracle threshold's and top 3, vocabulary invariance); the fine-tuned rows'
calibrator is the one `c2srt train` fitted on the held-out fine-tuning scenes (`calibration.holdout`),
the zero-shot rows' is fitted on the same scenes; the full model's seed-0 reliability diagram is
`reliability.png`. No printing here: the caller gets one progress message per row
through `on_progress` and the report (tables included) as the return value.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import shutil
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..config import Cfg, merge_config
from ..constants import DEFAULT_THRESHOLD, POSITIVE

_logger = logging.getLogger(__name__)

COLUMNS = ("zsl/mAP", "zsl/F1@3", "zsl/F1@5", "gzsl/mAP", "gzsl/F1@3", "gzsl/F1@5")
PAIRED_COLUMNS = ("zsl/mAP", "zsl/F1@3", "gzsl/mAP", "gzsl/F1@3")
GROUPS = ("small", "large", "correlated", "uncorrelated")  # ZSL mAP breakdown
CONFIDENCE = 0.95
PICTURE_IMAGES = 4  # test scenes drawn with their selected regions
PICTURE_LABELS = 7  # most labels drawn per scene
ROW_KEYS = ("name", "scorer", "edges")  # a demo.yaml row's own keys; the rest are config overrides
# Tag decisions (issue 21): per group of labels, the calibrated probabilities' figures on the test
# scenes; "F1@3" is the ranking's top-3 F1 over the group's labels alone (the evaluator's seen / ZSL block)
DECISION_GROUPS = ("seen", "unseen")
DECISION_FIGURES = ("ECE", "Brier", "F1@0.5", "oracle_F1", "macroF1@0.5", "oracle_macroF1", "F1@3")
DECISION_COLUMNS = tuple(f"decision/{g}/{f}" for g in DECISION_GROUPS for f in DECISION_FIGURES) + (
    "decision/invariance/max",
    "decision/invariance/mean",
)
TOP3_BLOCK = {"seen": "seen", "unseen": "zsl"}  # where each group's top-3 F1 comes from
INVARIANCE_SCENES = 100  # test scenes also scored inside random small vocabularies (vocabulary invariance)
SMALL_VOCABULARY = 5  # labels of those vocabularies (each contains the label scored)
GRAPH_ASSET = "miniworld-graph-{source}.json"  # shipped graphs, keyed by `graph_key`


# ---------------------------------------------------------------------------------------------
# Spec and configs
# ---------------------------------------------------------------------------------------------
def load_demo_spec() -> dict[str, Any]:
    """The benchmark definition (c2srt/miniworld/demo.yaml): base config, rows, quick settings."""
    import yaml

    return yaml.safe_load((resources.files("c2srt.miniworld") / "demo.yaml").read_text())


def slug(name: str) -> str:
    """A folder name for a row: "C2SRT (full)" -> "c2srt_full"."""
    out = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    while "__" in out:
        out = out.replace("__", "_")
    return out


def _deep_update(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def base_config(spec: dict[str, Any], *, quick: bool) -> dict[str, Any]:
    return _deep_update(spec["base"], spec.get("quick", {})) if quick else copy.deepcopy(spec["base"])


def row_config(
    spec: dict[str, Any], row: dict[str, Any], output_dir: Path, *, quick: bool, seed: int, pretrained: str, graph_path: str | None, curves: bool = True
) -> Cfg:
    """The resolved config of one row and seed (its own output folder).

    `curves=False` skips the validation passes during fine-tuning (they only draw the learning
    curves, which the demo shows for its first seed); the row's figures come from `evaluate_row`.
    """
    data = _deep_update(base_config(spec, quick=quick), {k: v for k, v in row.items() if k not in ROW_KEYS})
    if not curves:
        data = _deep_update(data, {"train": {"val_every": 0}})
    data = _deep_update(
        data,
        {
            "seed": seed,
            "output_dir": str(output_dir / slug(row["name"]) / f"seed{seed}"),
            "model": {"pretrained": pretrained},
            "data": {"options": {"seed": seed}},
            "graph": {"path": graph_path},
        },
    )
    return merge_config(Cfg(), data)


# ---------------------------------------------------------------------------------------------
# The category graph: shipped, cached or built
# ---------------------------------------------------------------------------------------------
GRAPH_POLICY = "seen, then extended"  # c2srt.graph.prepare_graph: built over the seen labels, unseen linked in


def graph_key(names: list[str], seen: list[str], source: str, candidates: int, max_neighbors: int, **settings: Any) -> str:
    """What a demo graph depends on: its vocabulary, split, source, cut and how it is built (the
    model and prompt are in its provenance; a newer prompt does not make the shipped graph wrong).
    `settings`: the other `GraphCfg` values that shape it (LLM mode, mutual rank, PMI floor, links
    between unseen labels)."""
    blob = json.dumps([names, seen, source, candidates, max_neighbors, GRAPH_POLICY, sorted(settings.items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _graph_settings(cfg: Any) -> dict[str, Any]:
    """The `GraphCfg` values beyond source, candidates and cap that change the graph."""
    return {k: getattr(cfg, k) for k in ("llm_mode", "mutual_k", "min_pmi", "link_unseen")}


def demo_graph(names: list[str], seen: list[str], *, cfg: Any, cache_dir: Path | None) -> Path:
    """The category graph of the mini-world vocabulary: the shipped file when its key matches,
    else the cached one, else built now by `c2srt.graph.prepare_graph` (the local language model
    for source "llm") and cached.

    Args:
        cfg: the `GraphCfg` (source, candidates, cut).
    """
    from ..graph import CategoryGraph, prepare_graph
    from .pretrain import miniworld_cache

    key = graph_key(names, seen, cfg.source, cfg.candidates, cfg.max_neighbors, **_graph_settings(cfg))
    shipped = Path(str(resources.files("c2srt.miniworld") / "assets" / GRAPH_ASSET.format(source=cfg.source)))
    if shipped.is_file() and CategoryGraph.load(shipped).provenance.get("miniworld_key") == key:
        return shipped
    cached = miniworld_cache(cache_dir) / f"miniworld-graph-{cfg.source}-{key}.json"
    if cached.is_file() and CategoryGraph.load(cached).provenance.get("miniworld_key") == key:
        return cached
    t0 = time.time()
    graph = prepare_graph(names, seen=seen, cfg=dataclasses.replace(cfg, path=None))
    graph.provenance["miniworld_key"] = key
    graph.save(cached)
    _logger.info("category graph (%s) of %d labels built in %.0f s: %s", cfg.source, len(names), time.time() - t0, cached)
    return cached


# ---------------------------------------------------------------------------------------------
# Scoring and figures
# ---------------------------------------------------------------------------------------------
def evaluate_row(
    model: Any,
    cfg: Cfg,
    *,
    graph: Any = None,
    zero_shot: bool = False,
    calibrator: Any = None,
    seed: int = 0,
    reliability: Path | None = None,
) -> dict[str, Any]:
    """Figures of one row on the test split of `cfg.data`, from the one evaluation loop
    (`c2srt.evaluate.evaluate_split`, as `c2srt eval` scores: ZSL from a pass over the unseen
    labels alone, GZSL over all), and the AP of every unseen label in the ZSL pass (for the breakdown).

    With a `calibrator`, also the row's tag decisions from the same image pass (the decision scores,
    `score_blocks(..., decision=True)`, mapped to probabilities): `decision_figures` for the seen and
    the unseen labels, and vocabulary invariance on the first `INVARIANCE_SCENES` test scenes
    (`vocabulary_invariance_of`, seeded by `seed`).

    Args:
        model: a C2SRT model.
        cfg: the row's config (test split, batch size, protocol, top-k).
        graph: the category graph (IST models).
        zero_shot: score with CLIP's cos(g, t) instead of the heads.
        calibrator: a `c2srt.calibration.Calibrator` for the model's decision scores (None: no
            decision figures).
        seed: seeds the random small vocabularies of the invariance figure.
        reliability: with a calibrator, also draw the reliability diagram of the test scenes here.

    Returns:
        Fractions: `zsl/mAP`, `zsl/F1@3`, ..., `gzsl/...`, `zsl_ap` (one AP per unseen label) and,
        with a calibrator, `DECISION_COLUMNS` and `decision/seconds` (the time the decision figures
        took beyond the shared image pass: the invariance passes, the figures and the picture).
    """
    from ..data.base import build_dataset
    from ..evaluate import evaluate_split
    from ..model import eval_transform

    ds = build_dataset(cfg.data, "test", eval_transform(model))
    result = evaluate_split(model, cfg, graph=graph, zero_shot=zero_shot, dataset=ds, decision=calibrator is not None)
    figures: dict[str, Any] = {k: float(v) for k, v in result.figures.items() if k.startswith(("zsl/", "gzsl/")) and ("mAP" in k or "@" in k)}
    figures["zsl_ap"] = result.per_label_ap["zsl"].tolist()
    if calibrator is None:
        return figures
    t0 = time.perf_counter()
    assert result.decision is not None and result.targets is not None
    seen = np.asarray(ds.seen_mask, dtype=bool)
    probs = np.asarray(calibrator(result.decision), dtype=np.float64)
    figures.update(decision_figures(probs, result.targets, seen, ranking=result.figures))
    n = min(INVARIANCE_SCENES, len(ds))
    small = vocabulary_invariance_of(model, torch.utils.data.Subset(ds, range(n)), graph=graph, zero_shot=zero_shot, seed=seed, batch_size=cfg.eval.batch_size)
    from ..metrics import vocabulary_invariance

    inv = vocabulary_invariance(probs[:n], calibrator(small))
    figures["decision/invariance/max"], figures["decision/invariance/mean"] = inv["max"], inv["mean"]
    if reliability is not None:
        from ..viz import plot_reliability

        plot_reliability(
            probs, result.targets, {"seen labels": seen, "unseen labels": ~seen}, reliability,
            title=f"Reliability on {len(probs):,} test scenes (calibrated probabilities)",
        )  # fmt: skip
    figures["decision/seconds"] = time.perf_counter() - t0
    return figures


def decision_figures(probs: np.ndarray, targets: np.ndarray, seen: np.ndarray, *, ranking: dict[str, float]) -> dict[str, float]:
    """The tag-decision figures of probabilities [N, K] against targets [N, K] in {+1, -1, 0}, for the
    seen and for the unseen labels apart (`DECISION_COLUMNS` but invariance): ECE (15 bins),
    Brier, micro and macro F1 at `DEFAULT_THRESHOLD`, the best micro / macro F1 of any single
    global threshold (an oracle, for reference), and the ranking's top-3 F1 over the group's
    labels (`ranking`: the evaluator's figures, `seen/F1@3` and `zsl/F1@3`)."""
    from ..metrics import decision_metrics

    out: dict[str, float] = {}
    for group, cols in (("seen", seen), ("unseen", ~seen)):
        figures = decision_metrics(probs[:, cols], targets[:, cols], DEFAULT_THRESHOLD)
        out.update({f"decision/{group}/{k}": v for k, v in figures.items() if k != "oracle_threshold"})
        out[f"decision/{group}/F1@3"] = float(ranking.get(f"{TOP3_BLOCK[group]}/F1@3", float("nan")))
    return out


@torch.no_grad()
def vocabulary_invariance_of(
    model: Any, dataset: Any, *, graph: Any = None, zero_shot: bool = False, seed: int = 0, batch_size: int = 64, size: int = SMALL_VOCABULARY
) -> np.ndarray:
    """Each (image, label)'s decision score inside a random `size`-label vocabulary that contains it.

    Per batch of images one seeded random partition of the labels into vocabularies of `size` (the
    last takes the remainder), so every entry is scored once beside `size - 1` random other labels.
    IST models get the graph of that vocabulary as `c2srt predict` would (the model's graph, its
    edges among the vocabulary's labels).

    Returns:
        [N, K] decision scores, aligned with `dataset.label_names`.
    """
    from ..data.base import collate_samples
    from ..model import LabelSet

    names = list(dataset.dataset.label_names if isinstance(dataset, torch.utils.data.Subset) else dataset.label_names)
    k = len(names)
    gen = np.random.default_rng(seed)
    device = next(model.parameters()).device
    model.eval()
    out = []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples):
        order = gen.permutation(k)
        groups = [order[i : i + size] for i in range(0, max(k - k % size, size), size)]
        if k % size and k > size:
            groups[-1] = np.concatenate([groups[-1], order[len(groups) * size :]])
        images = batch["image"].to(device)
        s = torch.empty(len(images), k)
        for group in groups:
            sub = [names[i] for i in group]
            if zero_shot:
                labels = LabelSet(sub, model.label_encoder.encode_labels(sub))
            else:
                labels = model.label_set(sub, graph if model.ist is not None else None)
            s[:, torch.as_tensor(group)] = model.decision_scores(images, labels, zero_shot=zero_shot).float().cpu()
        out.append(s.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)


def row_calibrator(model: Any, cfg: Cfg, *, zero_shot: bool = False) -> Any:
    """A calibrator for a row without fine-tuning (a zero-shot row has no training run to hold
    images out of): fitted, as `c2srt train` fits it, on the held-out part of the row's
    fine-tuning listing (`calibration.*`), seen labels only, scored with the evaluation transform."""
    from ..calibration import data_provenance, fit_calibrator, split_dataset
    from ..data.base import build_dataset
    from ..model import eval_transform

    held = split_dataset(build_dataset(cfg.data, "train", eval_transform(model)), cfg.calibration)[1]
    return fit_calibrator(
        model, held, method=cfg.calibration.method, zero_shot=zero_shot, batch_size=cfg.eval.batch_size,
        provenance=data_provenance(cfg, "train", heldout=True),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Uncertainty
# ---------------------------------------------------------------------------------------------
def interval(values: list[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and half-width of the two-sided t confidence interval (NaN half-width for one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half)


def group_map(zsl_ap: list[float], unseen_names: list[str], members: list[str]) -> float:
    """Mean ZSL AP over the unseen labels of one group."""
    idx = [unseen_names.index(n) for n in members]
    return float(np.mean([zsl_ap[i] for i in idx])) if idx else float("nan")


def summarise(
    per_seed: dict[str, list[dict[str, Any]]],
    *,
    reference: str,
    unseen_names: list[str],
    groups: dict[str, list[str]],
    parts: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Means and intervals per row and figure, paired differences against `reference`, the
    breakdown, and each part of `parts` ({part, row, against}) as a paired difference of its rows."""
    out: dict[str, Any] = {"rows": {}, "paired": {}, "breakdown": {}, "paired_breakdown": {}, "parts": {}, "decisions": {}}

    def breakdown(result: dict[str, Any]) -> dict[str, float]:
        return {g: group_map(result["zsl_ap"], unseen_names, groups[g]) for g in GROUPS}

    def paired(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
        figures = {c: dict(zip(("mean", "ci95"), interval([r[c] - q[c] for r, q in zip(a, b)]))) for c in PAIRED_COLUMNS}
        pa, pb = [breakdown(r) for r in a], [breakdown(r) for r in b]
        figures.update({g: dict(zip(("mean", "ci95"), interval([x[g] - y[g] for x, y in zip(pa, pb)]))) for g in GROUPS})
        return figures

    for part in parts or []:
        a, b = per_seed.get(part["row"], []), per_seed.get(part["against"], [])
        if len(a) == len(b) >= 2:  # as the paired table: one seed gives no interval
            out["parts"][part["part"]] = {"row": part["row"], "against": part["against"], **paired(a, b)}

    ref = per_seed.get(reference, [])
    for name, results in per_seed.items():
        out["rows"][name] = {c: dict(zip(("mean", "ci95"), interval([r[c] for r in results]))) for c in COLUMNS}
        if results and all(c in r for r in results for c in DECISION_COLUMNS):  # rows with a calibrator
            out["decisions"][name] = {c: dict(zip(("mean", "ci95"), interval([r[c] for r in results]))) for c in DECISION_COLUMNS}
        parts = [breakdown(r) for r in results]
        out["breakdown"][name] = {g: dict(zip(("mean", "ci95"), interval([p[g] for p in parts]))) for g in GROUPS}
        if name == reference or len(ref) != len(results) or len(results) < 2:
            continue
        ref_parts = [breakdown(r) for r in ref]
        out["paired"][name] = {c: dict(zip(("mean", "ci95"), interval([r[c] - q[c] for r, q in zip(results, ref)]))) for c in PAIRED_COLUMNS}
        out["paired_breakdown"][name] = {g: dict(zip(("mean", "ci95"), interval([p[g] - q[g] for p, q in zip(parts, ref_parts)]))) for g in GROUPS}
    return out


def _cell(fig: dict[str, float], *, signed: bool = False, scale: float = 100.0, digits: int = 1) -> str:
    mean, half = scale * fig["mean"], scale * fig["ci95"]
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return text if np.isnan(half) else f"{text} ± {half:.{digits}f}"


def _title(column: str) -> str:
    block, metric = column.split("/", 1)
    return f"{block.upper()} {metric}"


DECISION_TABLE = (  # (column, title, scale): percent, but invariance in percentage points of probability
    *((f"decision/seen/{f}", f"seen {t}", 100.0) for f, t in (("ECE", "ECE"), ("Brier", "Brier"), ("F1@0.5", "F1@0.5"), ("oracle_F1", "oracle F1"), ("macroF1@0.5", "macro F1@0.5"), ("F1@3", "F1@3"))),
    *((f"decision/unseen/{f}", f"unseen {t}", 100.0) for f, t in (("ECE", "ECE"), ("Brier", "Brier"), ("F1@0.5", "F1@0.5"), ("oracle_F1", "oracle F1"), ("macroF1@0.5", "macro F1@0.5"), ("F1@3", "F1@3"))),
    ("decision/invariance/max", "invariance max", 100.0),
    ("decision/invariance/mean", "invariance mean", 100.0),
)  # fmt: skip


def format_decision_table(summary: dict[str, Any], *, seeds: list[int]) -> str:
    """Markdown: the "Tag decisions" table (calibrated probabilities on the test scenes), or "" without one."""
    rows = summary.get("decisions") or {}
    if not rows:
        return ""
    n = len(seeds)
    note = f"mean ± 95 % t-interval over {n} seeds" if n > 1 else "one seed (no interval)"
    lines = [
        f"Tag decisions: calibrated P(label present) on the test scenes, {note}; percent. Seen labels: the GZSL "
        f"columns of the seen labels; unseen: the ZSL columns. F1@0.5: deciding present at P >= {DEFAULT_THRESHOLD}; "
        "oracle F1: the best one global threshold on the test scenes reaches (for reference); F1@3: the ranking's "
        f"top 3. Invariance: |P with all labels - P inside a random {SMALL_VOCABULARY}-label vocabulary holding the label| "
        f"on {INVARIANCE_SCENES} test scenes, max and mean, in percentage points. Calibrator: fitted on the fine-tuning "
        "scenes held out of training (`calibration.holdout`); zero-shot rows, which train nothing, on the same held-out scenes.",
        "",
        "| method | " + " | ".join(t for _, t, _ in DECISION_TABLE) + " |",
        "|" + "---|" * (len(DECISION_TABLE) + 1),
    ]
    for name, row in rows.items():
        cells = [_cell(row[c], scale=scale, digits=2 if "invariance" in c else 1) for c, _, scale in DECISION_TABLE]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_tables(summary: dict[str, Any], *, reference: str, groups: dict[str, list[str]], seeds: list[int]) -> str:
    """Markdown: the main table, paired differences, and the ZSL mAP breakdown (percent)."""
    n = len(seeds)
    note = f"mean ± 95 % t-interval over {n} seeds" if n > 1 else "one seed (no interval)"
    lines = [f"Mini-world ablation, {note}; percent.", "", "| method | " + " | ".join(_title(c) for c in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    lines += [f"| {name} | " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |" for name, row in summary["rows"].items()]
    if summary["paired"]:
        lines += ["", f"Paired difference against {reference} (same seed: same scenes, same stand-in), mean ± 95 % t-interval:", ""]
        lines += ["| method | " + " | ".join("Δ " + _title(c) for c in PAIRED_COLUMNS) + " |", "|" + "---|" * (len(PAIRED_COLUMNS) + 1)]
        lines += [f"| {name} | " + " | ".join(_cell(row[c], signed=True) for c in PAIRED_COLUMNS) + " |" for name, row in summary["paired"].items()]
    sizes = {g: len(groups[g]) for g in GROUPS}
    lines += ["", "ZSL mAP by unseen-label group (" + ", ".join(f"{g}: {', '.join(groups[g])}" for g in GROUPS) + "):", ""]
    lines += ["| method | " + " | ".join(f"{g} ({sizes[g]})" for g in GROUPS) + " |", "|" + "---|" * (len(GROUPS) + 1)]
    for name, row in summary["breakdown"].items():
        paired = summary["paired_breakdown"].get(name)
        cells = [_cell(row[g]) + (f" ({_cell(paired[g], signed=True)})" if paired else "") for g in GROUPS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if summary["paired_breakdown"]:
        lines += ["", f"(in brackets: the paired difference against {reference})"]
    if summary.get("parts"):
        lines += ["", "What each part of IST adds (paired difference between two rows that differ in that part alone):", ""]
        cols = [*PAIRED_COLUMNS, *GROUPS]
        lines += ["| part | row − against | " + " | ".join(("Δ " + _title(c)) if "/" in c else f"Δ {c}" for c in cols) + " |", "|" + "---|" * (len(cols) + 2)]
        for name, part in summary["parts"].items():
            lines.append(f"| {name} | {part['row']} − {part['against']} | " + " | ".join(_cell(part[c], signed=True) for c in cols) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
SPEED_SIZE = 512  # the speed probe: fp32 matrix products of this side ...
SPEED_REPEATS = 40  # ... this many, after one warm-up


def cpu_speed() -> float:
    """This machine's fp32 matrix-product speed in GFLOP/s with torch's thread count: printed beside
    the demo's timings, so that a reader can scale them to another machine (machines of one kind
    differ several-fold)."""
    a = torch.randn(SPEED_SIZE, SPEED_SIZE, generator=torch.Generator().manual_seed(0))
    a @ a  # warm-up
    t0 = time.perf_counter()
    for _ in range(SPEED_REPEATS):
        a @ a
    return 2 * SPEED_SIZE**3 * SPEED_REPEATS / (time.perf_counter() - t0) / 1e9


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep each fine-tuning run's own lines (its run summary, a validation line per epoch) and
    Lightning's data-loader advice out of the demo's output: one progress line per row is what a
    reader wants. Debug logging (`c2srt -v`) shows everything."""
    ours = logging.getLogger("c2srt")
    if ours.isEnabledFor(logging.DEBUG):
        yield
        return
    level = ours.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(num_workers|log_every_n_steps|does not have many workers).*")
        ours.setLevel(logging.WARNING)
        try:
            yield
        finally:
            ours.setLevel(level)


def run_demo(
    output_dir: Path = Path("runs/demo"),
    *,
    quick: bool = False,
    seeds: list[int] | None = None,
    cache_dir: Path | None = None,
    graph_source: str | None = None,
    pretrain: bool = False,
    controls: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the mini-world benchmark.

    Args:
        output_dir: where results.json, results.md, world.json and the pictures (reliability.png
            among them) go; each row's
            run (config, logs, curves, `model.safetensors` for the first seed) under `<row>/seed<s>/`.
        quick: the small version (fewer scenes and epochs; noise-level numbers).
        seeds: fine-tuning seeds; each also draws its own fine-tuning and test scenes (default [0]).
        cache_dir: cache root (default $C2SRT_CACHE or ~/.cache/c2srt).
        graph_source: "llm" (default: the shipped Gemma 3 270M graph) or "embedding".
        pretrain: rebuild the CLIP stand-in instead of using the shipped or cached weights.
        controls: also run demo.yaml's control rows (the IST rows on a graph without edges).
        on_progress: called with one line per finished row.

    Returns:
        The report: "table" (markdown), "summary", "per_seed", "world", "stand_in", "timings_s", paths.
    """
    from ..calibration import load_calibrator
    from ..checkpoint import load_checkpoint
    from ..graph import CategoryGraph
    from ..io import atomic_write_text, write_json
    from ..model import create_model
    from ..training import fit
    from .pretrain import QUICK, PretrainCfg, load_stand_in
    from .report import REPORT_SCENES, REPORT_WEB, plot_world_report, probe_stand_in, world_report
    from .world import MiniWorld

    say = on_progress or (lambda line: None)
    t_start = time.time()
    seeds = list(seeds if seeds else [0])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    spec = load_demo_spec()
    timings: dict[str, float] = {}
    speed = {"cpu_gflops": round(cpu_speed(), 1), "threads": torch.get_num_threads()}
    with quiet():
        world = MiniWorld(seed=0)
        t0 = time.time()
        recipe = QUICK if quick and pretrain else PretrainCfg()
        ckpt, stand_in = load_stand_in(world, recipe, cache_dir=cache_dir, rebuild=pretrain, evaluate=lambda b: probe_stand_in(b, world))
        timings["stand_in_s"] = time.time() - t0
        say(f"CLIP stand-in: {ckpt} ({'rebuilt' if pretrain else 'recipe ' + stand_in.get('recipe_hash', '?')})")

        t0 = time.time()
        report = world_report(world, n=500 if quick else REPORT_SCENES, n_web=500 if quick else REPORT_WEB)
        write_json(output_dir / "world.json", report)
        plot_world_report(report, output_dir / "world.png")
        groups = _groups(report)
        timings["world_report_s"] = time.time() - t0

        graph_cfg = merge_config(Cfg(), {"graph": base_config(spec, quick=quick)["graph"]}).graph
        source = graph_source or graph_cfg.source
        t0 = time.time()
        graph_path = demo_graph(world.label_names, world.seen_names, cfg=dataclasses.replace(graph_cfg, source=source), cache_dir=cache_dir)
        graph = CategoryGraph.load(graph_path)
        timings["graph_s"] = time.time() - t0

        rows = [*spec["zero_shot"], *spec["variants"], *(spec.get("controls", []) if controls else [])]
        kinds = {row.get("edges") for row in rows}
        graph_paths = control_graphs(graph, graph_path, world, kinds, seeds, output_dir, max_neighbors=graph_cfg.max_neighbors)
        per_seed: dict[str, list[dict[str, Any]]] = {r["name"]: [] for r in rows}
        curves: dict[str, Path] = {}
        full_model: Path | None = None
        total = len(rows) * len(seeds)
        done = 0
        for seed in seeds:
            for row in rows:
                t0 = time.time()
                cfg = row_config(
                    spec, row, output_dir, quick=quick, seed=seed, pretrained=str(ckpt), graph_path=graph_paths[row.get("edges"), seed], curves=seed == seeds[0]
                )  # fmt: skip
                if row in spec["zero_shot"]:
                    model = create_model(dataclasses.replace(cfg.model, distill=False), teacher=False)
                    zero_shot = row.get("scorer") == "global"
                    t1 = time.perf_counter()
                    calibrator = row_calibrator(model, cfg, zero_shot=zero_shot)  # no training run held scenes out: the same ones
                    fit_s = time.perf_counter() - t1
                    result = evaluate_row(model, cfg, zero_shot=zero_shot, calibrator=calibrator, seed=seed)
                    result["decision/seconds"] += fit_s
                else:
                    export = fit(cfg, progress=False)
                    model, info = load_checkpoint(export)
                    full_row = seed == seeds[0] and row is spec["variants"][-1]
                    calibrator = load_calibrator(export)  # fitted at export on the held-out fine-tuning scenes
                    result = evaluate_row(
                        model, cfg, graph=CategoryGraph.from_dict(info.graph) if info.graph else None,
                        calibrator=calibrator, seed=seed, reliability=output_dir / "reliability.png" if full_row else None,
                    )  # fmt: skip
                    if calibrator is not None and "decision/seconds" in result:
                        result["decision/seconds"] += float(calibrator.provenance.get("seconds", 0.0))
                    shutil.rmtree(Path(cfg.output_dir) / "checkpoints", ignore_errors=True)  # resumable state: tens of MB, not needed
                    if seed == seeds[0]:
                        curves[row["name"]] = Path(cfg.output_dir) / "logs" / "metrics.csv"
                        if row is spec["variants"][-1]:
                            full_model = export
                    else:
                        export.unlink(missing_ok=True)
                per_seed[row["name"]].append(result)
                seconds = time.time() - t0
                timings[f"{slug(row['name'])}_seed{seed}_s"] = seconds
                done += 1
                if "decision/seconds" in result:
                    timings[f"{slug(row['name'])}_seed{seed}_decisions_s"] = result["decision/seconds"]
                decided = ""
                if "decision/unseen/F1@0.5" in result:
                    decided = f", ZSL F1@0.5 {100 * result['decision/unseen/F1@0.5']:.1f} (oracle {100 * result['decision/unseen/oracle_F1']:.1f})"
                say(f"[{done}/{total}] {row['name']} (seed {seed}): ZSL mAP {100 * result['zsl/mAP']:.1f}, GZSL mAP {100 * result['gzsl/mAP']:.1f}, ZSL F1@3 {100 * result['zsl/F1@3']:.1f}{decided} ({seconds:.0f} s)")

        unseen_names = list(world.unseen_names)
        summary = summarise(per_seed, reference=spec["reference"], unseen_names=unseen_names, groups=groups, parts=spec.get("parts"))
        table = format_tables(summary, reference=spec["reference"], groups=groups, seeds=seeds)
        decisions = format_decision_table(summary, seeds=seeds)
        if decisions:
            table += "\n\n## Tag decisions\n\n" + decisions
        timings["decisions_s"] = sum(v for k, v in timings.items() if k.endswith("_decisions_s"))
        timings["total_s"] = time.time() - t_start
        result = {
            "table": table,
            "seeds": seeds,
            "quick": quick,
            "reference": spec["reference"],
            "graph": str(graph_path),
            "graph_source": source,
            "stand_in": {"weights": str(ckpt), **stand_in},
            "groups": groups,
            "unseen": unseen_names,
            "summary": summary,
            "per_seed": per_seed,
            "full_model": str(full_model) if full_model else None,
            "reliability": str(output_dir / "reliability.png") if (output_dir / "reliability.png").is_file() else None,
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "machine": speed,
        }
        write_json(output_dir / "results.json", result)
        footer = f"\nTotal {timings['total_s']:.0f} s on a CPU doing {speed['cpu_gflops']:.0f} GFLOP/s (fp32 matrix products, {speed['threads']} threads)."
        atomic_write_text(output_dir / "results.md", table + "\n" + footer + "\n")
        _pictures(output_dir, curves, full_model, graph)
    return result


EDGE_KINDS = (None, "none", "random", "oracle")  # a row's `edges`: the library's graph, none, random like it, the oracle's


def control_graphs(
    graph: Any, graph_path: Path, world: Any, kinds: set[str | None], seeds: list[int], output_dir: Path, *, max_neighbors: int
) -> dict[tuple[str | None, int], str]:
    """The graph file of every (row `edges`, seed): the library's graph, or a control built from it
    (`c2srt.graph.controls`; random edges drawn again per seed) or from the world (the oracle, with
    at most `max_neighbors` in-edges per label, as the library's graph)."""
    from ..graph.controls import edgeless, random_like
    from .report import oracle_graph

    unknown = sorted(str(k) for k in kinds if k not in EDGE_KINDS)
    if unknown:
        raise ValueError(f"demo.yaml: unknown row edges {', '.join(unknown)}; valid: {', '.join(str(k) for k in EDGE_KINDS)}")
    paths: dict[tuple[str | None, int], str] = {(None, s): str(graph_path) for s in seeds}
    if "none" in kinds:
        edgeless(graph).save(output_dir / "graph-no-edges.json")
        paths.update({("none", s): str(output_dir / "graph-no-edges.json") for s in seeds})
    if "oracle" in kinds:
        oracle_graph(world, max_neighbors=max_neighbors).save(output_dir / "graph-oracle.json")
        paths.update({("oracle", s): str(output_dir / "graph-oracle.json") for s in seeds})
    for s in seeds if "random" in kinds else []:
        random_like(graph, seed=s).save(output_dir / f"graph-random-seed{s}.json")
        paths["random", s] = str(output_dir / f"graph-random-seed{s}.json")
    return paths


def _groups(report: dict[str, Any]) -> dict[str, list[str]]:
    """Unseen labels by size and by correlation, from the world report's measured rules."""
    rows = [r for r in report["labels"] if r["split"] == "unseen"]
    return {
        "small": [r["label"] for r in rows if r["size"] == "small"],
        "large": [r["label"] for r in rows if r["size"] == "large"],
        "correlated": [r["label"] for r in rows if r["correlated"]],
        "uncorrelated": [r["label"] for r in rows if not r["correlated"]],
    }


def _pictures(output_dir: Path, curves: dict[str, Path], model_path: Path | None, graph: Any) -> None:
    """Learning curves of every fine-tuned row, the graph, selected regions of a few test scenes."""
    from ..viz import plot_multi_curves

    try:
        runs = {k: v for k, v in curves.items() if v.is_file()}
        plot_multi_curves(runs, output_dir / "curves.png", metric=("val/seen/mAP", "val/zsl/mAP", "val/gzsl/mAP"))
    except (OSError, ValueError, KeyError) as e:
        _logger.warning("no learning-curve picture: %s", e)
    try:
        from ..graph.draw import draw_graph

        draw_graph(graph, output_dir / "graph.png")
    except (OSError, ValueError, ImportError) as e:
        _logger.warning("no graph picture: %s", e)
    if model_path is not None and model_path.is_file():
        region_pictures(model_path, output_dir / "regions")


def _picture_indices(labels: np.ndarray, seen: np.ndarray, n: int) -> list[int]:
    """Test scenes worth drawing: the first `n` with an unseen label and at least 5 labels."""
    pos = labels == POSITIVE  # [M, K]
    good = np.flatnonzero(pos[:, ~seen].any(1) & (pos.sum(1) >= 5)).tolist()[:n]
    return (good + [i for i in range(len(labels)) if i not in set(good)])[:n]


@torch.no_grad()
def region_pictures(model_path: Path, out_dir: Path, *, n_images: int = PICTURE_IMAGES) -> None:
    """Per-label selected patches of a fine-tuned model on a few test scenes, one PNG per scene."""
    from ..checkpoint import load_checkpoint
    from ..data.base import build_dataset
    from ..model import eval_transform
    from ..graph import CategoryGraph
    from ..viz import region_heatmaps

    model, info = load_checkpoint(model_path)
    model.eval()
    ds = build_dataset(info.cfg.data, "test", eval_transform(model))
    names = list(ds.label_names)
    seen = np.asarray(ds.seen_mask, dtype=bool)
    graph = CategoryGraph.from_dict(info.graph) if info.graph is not None else None
    labels = model.label_set(names, graph if model.ist is not None else None)
    idx = _picture_indices(np.asarray(ds.labels), seen, n_images)
    out = model(torch.stack([ds[i]["image"] for i in idx]), labels, return_weights=True)  # [n, 3, H, W] in
    for row, i in enumerate(idx):
        present = [k for k in np.flatnonzero(ds.labels[i] == POSITIVE)]
        present = sorted(present, key=lambda k: bool(seen[k]))[:PICTURE_LABELS]  # unseen labels are never cut
        rank = torch.argsort(out.logits[row], descending=True).tolist()
        drawn = [f"{names[k]}{'' if seen[k] else ' (unseen)'}: rank {rank.index(k) + 1}" for k in present]
        region_heatmaps(
            np.asarray(ds.pil_image(i)),
            out.weights[row][:, present].numpy(),  # [N, K] -> [N, L]
            drawn,
            [float(out.logits[row, k]) for k in present],
            [int(out.counts[row, k]) for k in present],
            out_dir / f"test{i}.png",
            title=f"test scene {i}: its true labels, ranked among all {len(names)}",
        )
