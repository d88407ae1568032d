"""Tag decisions on the mini-world: calibrated probabilities per (image, label), seen and unseen labels.

Trains the fine-tuned rows of `c2srt demo` (the same configs: `miniworld.demo.row_config` +
`train.fit`) and takes its two zero-shot rows, then per row and seed:
- scores held-out fine-tuning scenes (scenes the row never trained on: the fine-tuning stream of
  the seed's world after the 1,000 the demo trains on, i.e. the held-out part of a 1,000 + H scene
  listing), the `val` scenes (for choosing the calibrator's design) and the test scenes (the final
  figures), with the fused logits (the ranking) and the decision scores (`C2SRT.decision_scores`);
- fits a calibrator on the held-out scenes' seen labels (`c2srt.calibration.fit`);
- reports for seen labels (GZSL pass) and unseen labels (ZSL) separately: ECE (15 bins), Brier,
  micro / macro F1 at probability 0.5, the oracle-threshold F1, F1 at top-3 (the fused ranking),
  and vocabulary invariance (each label's probability with all 35 labels vs inside a random
  5-label vocabulary).

Models and scores are cached under `--work-dir` (rerunning only refits and re-reports). Prints a
table and writes JSON + CSV to `benchmarks/results/`.

    python benchmarks/calibration.py --split val --seeds 0          # choosing the design
    python benchmarks/calibration.py --split test --seeds 0 1 2 3 4  # the figures
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_io, eval_scale

N_TRAIN = 1000  # fine-tuning scenes of the demo's rows (demo.yaml)
N_VAL = 500  # `val` scenes scored for design choices
VOCAB_SIZE = 5  # the small vocabulary of the invariance figure
MAX_HOLDOUT = 400  # held-out scenes scored and cached (any --holdout up to this reuses them)
N_INVARIANCE = 300  # test scenes also scored inside random 5-label vocabularies
DEFAULT_THRESHOLD = 0.5  # the decision threshold on the probability (c2srt predict's default)


# ------------------------------------------------------------------------------------- data
class Scenes(torch.utils.data.Dataset):
    """Benchmark scenes of one world as samples (`image`, `target`), any target split, any range."""

    def __init__(self, seed: int, split: str, start: int, stop: int, transform: Any) -> None:
        from c2srt.miniworld.world import MiniWorld

        world = MiniWorld(seed)
        scenes = world.sample_target(stop, split)
        self.label_names = list(world.label_names)  # the dataset contract the demo's small-vocabulary scoring reads
        self.images, self.labels = scenes.images[start:stop], scenes.labels[start:stop]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        return {"image": self.transform(Image.fromarray(self.images[i])), "target": torch.tensor(self.labels[i], dtype=torch.long)}


def scene_sets(seed: int, transform: Any, holdout: int) -> dict[str, Scenes]:
    return {
        "holdout": Scenes(seed, "train", N_TRAIN, N_TRAIN + holdout, transform),
        "val": Scenes(seed, "val", 0, N_VAL, transform),
        "test": Scenes(seed, "test", 0, 1000, transform),
    }


# ----------------------------------------------------------------------------------- models
def demo_setup(cache_dir: Path | None) -> dict[str, Any]:
    """The demo's spec, stand-in weights, graph and world (as `run_demo` gets them)."""
    from c2srt.config import Cfg, merge_config
    from c2srt.miniworld.demo import base_config, demo_graph, load_demo_spec
    from c2srt.miniworld.pretrain import PretrainCfg, load_stand_in
    from c2srt.miniworld.world import MiniWorld

    spec = load_demo_spec()
    world = MiniWorld(seed=0)
    ckpt, _ = load_stand_in(world, PretrainCfg(), cache_dir=cache_dir)
    graph_cfg = merge_config(Cfg(), {"graph": base_config(spec, quick=False)["graph"]}).graph
    graph = demo_graph(world.label_names, world.seen_names, cfg=graph_cfg, cache_dir=cache_dir)
    return {"spec": spec, "stand_in": str(ckpt), "graph": str(graph), "world": world}


def row_model(setup: dict[str, Any], row: dict[str, Any], work: Path, seed: int) -> tuple[Any, Any]:
    """The row's model for `seed` (fine-tuned once and cached under `work`) and its graph."""
    from c2srt.checkpoint import load_checkpoint
    from c2srt.graph import CategoryGraph
    from c2srt.miniworld.demo import quiet, row_config, slug
    from c2srt.model import create_model
    from c2srt.training import fit

    cfg = row_config(setup["spec"], row, work, quick=False, seed=seed, pretrained=setup["stand_in"], graph_path=setup["graph"], curves=False)
    if row in setup["spec"]["zero_shot"]:
        return create_model(dataclasses.replace(cfg.model, distill=False), teacher=False).eval(), None
    export = work / slug(row["name"]) / f"seed{seed}" / "model.safetensors"
    if not export.is_file():
        with quiet():
            export = fit(cfg, progress=False)
    model, info = load_checkpoint(export)
    return model, CategoryGraph.from_dict(info.graph) if info.graph else None


@torch.no_grad()
def score_set(model: Any, labels: Any, ds: Scenes, seen: np.ndarray, *, zero_shot: bool, batch: int = 250) -> dict[str, np.ndarray]:
    """Fused logits of the ZSL and GZSL passes and the decision scores, one image pass per batch."""
    from c2srt.model import DECISION_KEY

    blocks = {"zsl": torch.as_tensor(np.flatnonzero(~seen)), "gzsl": torch.arange(len(seen))}
    out: dict[str, list[np.ndarray]] = {"zsl": [], "gzsl": [], "decision": [], "target": []}
    for b in torch.utils.data.DataLoader(ds, batch_size=batch):
        s = model.score_blocks(b["image"], labels, blocks, zero_shot=zero_shot, decision=True)
        out["zsl"].append(s["zsl"].float().numpy())
        out["gzsl"].append(s["gzsl"].float().numpy())
        out["decision"].append(s[DECISION_KEY].float().numpy())
        out["target"].append(b["target"].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def cached_scores(setup: dict[str, Any], row: dict[str, Any], work: Path, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Scores of every scene set for one row and seed, computed once (npz beside the model)."""
    from c2srt.model import eval_transform
    from c2srt.miniworld.demo import slug, vocabulary_invariance_of

    path = work / slug(row["name"]) / f"seed{seed}" / "scores.npz"
    if path.is_file():
        flat = dict(np.load(path))
        sets: dict[str, dict[str, np.ndarray]] = {}
        for key, value in flat.items():
            part, name = key.split("/", 1)
            sets.setdefault(part, {})[name] = value
        return sets
    t0 = time.time()
    model, graph = row_model(setup, row, work, seed)
    model.eval()
    world = setup["world"]
    names = list(world.label_names)
    seen = np.asarray(world.seen_mask, dtype=bool)
    zero_shot = row.get("scorer") == "global"
    from c2srt.model import LabelSet

    labels = LabelSet(names, model.label_encoder.encode_labels(names)) if zero_shot else model.label_set(names, graph)
    sets = {}
    for name, ds in scene_sets(seed, eval_transform(model), MAX_HOLDOUT).items():
        sets[name] = score_set(model, labels, ds, seen, zero_shot=zero_shot)
        if name == "test":
            part = torch.utils.data.Subset(ds, range(N_INVARIANCE))
            sets[name]["small_vocab"] = vocabulary_invariance_of(model, part, graph=graph, zero_shot=zero_shot, seed=seed, batch_size=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{f"{p}/{k}": v for p, d in sets.items() for k, v in d.items()})
    print(f"  {row['name']} seed {seed}: scored in {time.time() - t0:.0f} s", flush=True)
    return sets


# ---------------------------------------------------------------------------------- figures
TRANSFORMS = ("score", "minus_mean", "zscore")  # what the calibrator sees (design comparison only)


def calibrator_input(decision: np.ndarray, reference: np.ndarray, transform: str) -> np.ndarray:
    """The decision scores, or (design comparison) each label's scores centred / standardised by
    its mean and spread over reference images (the held-out scenes' images, their labels unused)."""
    if transform == "score":
        return decision.astype(np.float64)
    mu, sd = reference.mean(0), reference.std(0)  # [K] per label
    if transform == "minus_mean":
        return decision - mu[None, :]
    return (decision - mu[None, :]) / np.maximum(sd[None, :], 1e-6)


def row_figures(
    sets: dict[str, dict[str, np.ndarray]], seen: np.ndarray, *, split: str, holdout: int, method: str, transform: str = "score"
) -> dict[str, Any]:
    """Fit on the first `holdout` held-out scenes' seen labels; every figure on `split` (val or test).

    Fractions; block "seen" = the seen labels' columns, "unseen" = the unseen ones (decision scores
    of the pass over all labels: per label, so the same as a pass over the unseen labels alone
    without IST), "all" = every column; top-3 F1 from the fused logits of the ZSL and GZSL passes.
    """
    from c2srt.calibration import Calibrator
    from c2srt.metrics import decision_metrics, mean_average_precision, topk_prf, vocabulary_invariance

    fit, ev = sets["holdout"], sets[split]
    reference = fit["decision"][:holdout]
    x_fit = calibrator_input(fit["decision"][:holdout], reference, transform)
    cal = Calibrator.fit(x_fit[:, seen], fit["target"][:holdout][:, seen], method=method)
    prob = cal(calibrator_input(ev["decision"], reference, transform))
    out: dict[str, Any] = {}
    for block, cols in (("seen", seen), ("unseen", ~seen), ("all", np.ones_like(seen))):
        p, y = prob[:, cols], ev["target"][:, cols]
        out.update({f"{block}/{k}": v for k, v in decision_metrics(p, y, DEFAULT_THRESHOLD).items()})
        out.update(
            {
                f"{block}/mean_probability": float(p.mean()),
                f"{block}/positive_rate": float((y == 1).mean()),
                f"{block}/mAP_decision": mean_average_precision(ev["decision"][:, cols], y),
            }
        )
    out["zsl/F1@3"] = topk_prf(ev["zsl"], ev["target"][:, ~seen], 3)[2]
    out["gzsl/F1@3"] = topk_prf(ev["gzsl"], ev["target"], 3)[2]
    out["zsl/mAP"] = mean_average_precision(ev["zsl"], ev["target"][:, ~seen])
    out["gzsl/mAP"] = mean_average_precision(ev["gzsl"], ev["target"])
    if "small_vocab" in ev:
        n = len(ev["small_vocab"])
        small = cal(calibrator_input(ev["small_vocab"], reference, transform))
        inv = vocabulary_invariance(prob[:n], small)
        out["invariance/max"], out["invariance/mean"] = inv["max"], inv["mean"]
        for block, cols in (("seen", seen), ("unseen", ~seen)):
            out[f"invariance/{block}_max"] = vocabulary_invariance(prob[:n, cols], small[:, cols])["max"]
    out["calibrator"] = cal.metadata()["method"]
    out["calibrator_params"] = {k: v.tolist() for k, v in cal.state_dict().items()} if method == "platt" else None
    return out


SEEN_COLUMNS = (
    ("seen/ECE", "ECE"),
    ("seen/Brier", "Brier"),
    ("seen/F1@0.5", "F1@0.5"),
    ("seen/oracle_F1", "oracle F1"),
    ("seen/macroF1@0.5", "macro F1@0.5"),
    ("seen/oracle_macroF1", "oracle macro F1"),
    ("all/F1@0.5", "all labels F1@0.5"),
    ("gzsl/F1@3", "GZSL F1@3"),
)
UNSEEN_COLUMNS = (
    ("unseen/ECE", "ECE"),
    ("unseen/Brier", "Brier"),
    ("unseen/F1@0.5", "F1@0.5"),
    ("unseen/oracle_F1", "oracle F1"),
    ("unseen/macroF1@0.5", "macro F1@0.5"),
    ("unseen/oracle_macroF1", "oracle macro F1"),
    ("zsl/F1@3", "ZSL F1@3"),
)
OTHER_COLUMNS = (
    ("invariance/max", "invariance max"),
    ("invariance/mean", "invariance mean"),
    ("unseen/oracle_threshold", "unseen oracle threshold"),
    ("unseen/mean_probability", "unseen mean p"),
    ("unseen/positive_rate", "unseen positive rate"),
    ("unseen/mAP_decision", "ZSL mAP, decision score"),
    ("zsl/mAP", "ZSL mAP, fused"),
)


def summarise(per_seed: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and 95 % t half-width over seeds of every numeric figure, per row."""
    from c2srt.miniworld.demo import interval

    out = {}
    for name, results in per_seed.items():
        keys = [k for k, v in results[0].items() if isinstance(v, float)]
        out[name] = {k: dict(zip(("mean", "ci95"), interval([r[k] for r in results]))) for k in keys}
    return out


def _cell(fig: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    mean, half = scale * fig["mean"], scale * fig["ci95"]
    return f"{mean:.{digits}f}" if np.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def format_table(summary: dict[str, Any], columns: tuple[tuple[str, str], ...], title: str, *, scale: float = 100.0, digits: int = 1) -> str:
    lines = [title, "", "| row | " + " | ".join(t for _, t in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, figs in summary.items():
        lines.append(f"| {name} | " + " | ".join(_cell(figs[k], scale, digits) if k in figs else "" for k, _ in columns) + " |")
    return "\n".join(lines)


def design_rows(work: Path, setup: dict[str, Any], seeds: list[int], split: str) -> list[dict[str, Any]]:
    """The calibrator's design on `split` (val): method x held-out size x what it sees."""
    seen = np.asarray(setup["world"].seen_mask, dtype=bool)
    variants = [("platt", "score", h) for h in (50, 100, 200, 400)]
    variants += [("isotonic", "score", h) for h in (50, 100, 200, 400)]
    variants += [("platt", "minus_mean", 200), ("platt", "zscore", 200)]
    rows = []
    for row in all_rows(setup["spec"]):
        for method, transform, h in variants:
            per_seed = [row_figures(cached_scores(setup, row, work, s), seen, split=split, holdout=h, method=method, transform=transform) for s in seeds]
            figs = {k: float(np.mean([r[k] for r in per_seed])) for k, v in per_seed[0].items() if isinstance(v, float)}
            rows.append({"row": row["name"], "method": method, "input": transform, "holdout": h, **{k: round(100 * v, 2) for k, v in figs.items()}})
    return rows


DESIGN_PRINTED = ("seen/ECE", "unseen/ECE", "seen/F1@0.5", "seen/oracle_F1", "unseen/F1@0.5", "unseen/oracle_F1", "unseen/macroF1@0.5", "unseen/oracle_macroF1")


def all_rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec["zero_shot"], *spec["variants"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--split", choices=("val", "test"), default="val", help="scenes the figures are computed on (test: the final figures only)")
    p.add_argument("--holdout", type=int, default=100, help=f"held-out fine-tuning scenes the calibrator is fitted on (at most {MAX_HOLDOUT}; 100: calibration.holdout's 10 %% of the demo's 1,000)")
    p.add_argument("--method", choices=("platt", "isotonic"), default="platt")
    p.add_argument("--design", action="store_true", help="compare calibrator designs (method, held-out size, input) instead")
    p.add_argument("--work-dir", type=Path, default=Path("runs/calibration"), help="models and scores, cached")
    p.add_argument("--cache-dir", type=Path, help="mini-world cache (stand-in, graph)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared; 2 threads under load were slower)")
    p.add_argument("--score-only", action="store_true", help="train and score, report nothing")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    if not 1 <= args.holdout <= MAX_HOLDOUT:
        p.error(f"--holdout must lie in [1, {MAX_HOLDOUT}]")
    torch.set_num_threads(args.threads)
    from bench_io import print_rows, run_environment, write_rows

    load_before = float(__import__("os").getloadavg()[0])
    t0 = time.time()
    setup = demo_setup(args.cache_dir)
    for seed in args.seeds:
        for row in all_rows(setup["spec"]):
            cached_scores(setup, row, args.work_dir, seed)
    if args.score_only:
        return 0
    env = run_environment(torch.device("cpu"), load_before)
    seeds = "-".join(map(str, args.seeds))
    if args.design:
        rows = design_rows(args.work_dir, setup, args.seeds, args.split)
        print_rows([{k: v for k, v in r.items() if k in DESIGN_PRINTED or k in ("row", "method", "input", "holdout")} for r in rows])
        write_rows(args.out_dir, f"calibration_design_{args.split}_seeds{seeds}_{env['git_sha']}_cpu", rows, args=vars(args), environment=env)
        return 0
    seen = np.asarray(setup["world"].seen_mask, dtype=bool)
    per_seed = {
        row["name"]: [row_figures(cached_scores(setup, row, args.work_dir, s), seen, split=args.split, holdout=args.holdout, method=args.method) for s in args.seeds]
        for row in all_rows(setup["spec"])
    }
    summary = summarise(per_seed)
    n = len(args.seeds)
    note = f"{args.split} scenes, mean ± 95 % t-interval over {n} seeds" if n > 1 else f"{args.split} scenes, one seed"
    fit = f"{args.method} calibrator fitted on {args.holdout} held-out fine-tuning scenes (seen labels)"
    tables = "\n\n".join(
        [
            format_table(summary, SEEN_COLUMNS, f"Seen labels (GZSL), {note}; {fit}; percent."),
            format_table(summary, UNSEEN_COLUMNS, f"Unseen labels (ZSL), {note}; percent."),
            *(
                [format_table(summary, OTHER_COLUMNS[:2], f"Vocabulary invariance: |P(full vocabulary) - P(random {VOCAB_SIZE}-label vocabulary)| over {N_INVARIANCE} test scenes x 35 labels; probability.", scale=1.0, digits=4)]
                if args.split == "test"
                else []
            ),
            format_table(summary, OTHER_COLUMNS[2:], "Reading aids: where the unseen oracle threshold lies, the mean probability against the positive rate, ZSL mAP of the decision score against the fused logits; percent."),
        ]
    )
    print(tables)
    rows = [{"row": name, **{k: round(v["mean"], 6) for k, v in figs.items()}} for name, figs in summary.items()]
    tag = f"calibration_{args.split}_{args.method}_h{args.holdout}_seeds{seeds}_{env['git_sha']}_cpu"
    write_rows(args.out_dir, tag, rows, args=vars(args), environment=env, tables=tables, summary=summary, per_seed=per_seed, seconds=round(time.time() - t0, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
