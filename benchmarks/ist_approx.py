"""How far IST's approximate image mode (`model.ist.top_m` = M) is from the exact one, and what it saves.

Two measurements, each against the exact mode (top_m 0) on the same inputs:

1. Real-size random inputs (`--labels 7586 1006`, batch 32, D 512, hidden 256): per image, ten
   "present" labels (five random ones and one graph in-neighbour of each) get region features
   pointing to their label embedding, the rest are noise; a random graph gives every label
   `--neighbors` in-neighbours. The IST is randomly initialised with its output projection scaled
   so that the transfer W_o h has `--transfer` times the norm of the region feature (the trained
   value is unknown; 0.25 and 1 bracket it). Reported: top-20 agreement (mean over images of
   |top-20 exact & top-20 approximate| / 20), the largest score change among the exact top 20,
   the share of (image, label) nodes propagated, and the IST time of both modes.
2. A trained checkpoint (`--checkpoint`: its model.safetensors, its run folder, or a `c2srt demo`
   output folder, whose "C2SRT (full)" row of the first seed is taken; IST in image mode) on its own
   test split (config from the checkpoint, or `--config`): ZSL / GZSL mAP and F1 of the exact mode
   and of each M, from one encoder + region head pass per batch, scored as `c2srt eval` and the demo
   score it (`BlockwiseEvaluator`; with IST, ZSL is the unseen block of the pass over all labels, so
   the top-M choice runs over every label either way). The exact row therefore equals the demo's
   "C2SRT (full)" figures for that seed. `--miniworld` without `--checkpoint` first trains that row
   (`c2srt.miniworld`: shipped or cached stand-in and graph, seed 0, exact IST in training) under
   `--run-dir`; with `--smoke`, its quick version.

    python benchmarks/ist_approx.py --random-only                      # part 1, about 2 min
    python benchmarks/ist_approx.py --skip-random --checkpoint runs/demo --top-m 2 4 8 16 32   # part 2, the demo's model
    python benchmarks/ist_approx.py --miniworld --skip-random --top-m 4 8 16   # part 2, trains the row first
    python benchmarks/ist_approx.py --smoke                            # tiny sizes: does it run?
    python benchmarks/ist_approx.py --smoke --miniworld                # plus a quick mini-world row
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import add_device_args, autocast, print_rows, resolve_device, run_environment, timed, write_rows  # noqa: E402
from eval_scale import RESULTS_DIR  # noqa: E402
from heads_overhead import random_vocabulary  # noqa: E402

from c2srt.heads.ist import IstModule  # noqa: E402
from c2srt.io import cache_root  # noqa: E402

PRESENT_SEEDS = 5  # random labels per image, each joined by one graph in-neighbour
TOP = 20  # the agreement is over each image's top 20 (Open Images' F1@20)


def random_case(k: int, batch: int, dim: int, neighbors: int, device: torch.device, seed: int):
    """Label set, graph and region features [B, K, D] with ten present labels per image."""
    vocab = random_vocabulary(k, dim, neighbors, device, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    f = torch.randn(batch, k, dim, generator=g) / dim**0.5  # noise of norm about 1
    src, dst = vocab.edge_index.cpu()
    for b in range(batch):
        seeds = torch.randint(0, k, (PRESENT_SEEDS,), generator=g)
        partners = [int(src[dst == int(c)][torch.randint(0, neighbors, (1,), generator=g)]) for c in seeds]
        present = torch.cat([seeds, torch.tensor(partners)])
        f[b, present] += 1.5 * vocab.text[present].cpu()  # cos(f, t) about 0.8 for present labels, 0 otherwise
    return vocab, f.to(device)


def scale_transfer(ist: IstModule, f: torch.Tensor, vocab, ratio: float) -> None:
    """Set W_o's scale so that |W_o h| / |f| is about `ratio` (the rest of the weights: random init)."""
    torch.nn.init.normal_(ist.out_proj.weight)
    with torch.no_grad():
        ist.top_m, saved = 0, ist.top_m
        probe = f[:2]
        h = ist.in_proj(torch.cat([probe, vocab.text.to(probe.dtype).expand(probe.shape[0], -1, -1)], -1))
        h = ist.propagate(h.reshape(-1, ist.hidden), *_batched_graph(vocab, probe.shape[0]))
        now = ist.out_proj(h).norm(dim=-1).mean() / probe.norm(dim=-1).mean()
        ist.out_proj.weight.mul_(ratio / now)
        ist.top_m = saved


def _batched_graph(vocab, copies: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = len(vocab)
    offsets = torch.arange(copies, device=vocab.edge_index.device).repeat_interleave(vocab.edge_index.shape[1]) * k
    return vocab.edge_index.repeat(1, copies) + offsets, vocab.edge_weight.repeat(copies)


def top_agreement(exact: torch.Tensor, approx: torch.Tensor, top: int = TOP) -> tuple[float, float]:
    """Mean share of each image's exact top-`top` labels also in its approximate top-`top`; the
    largest score change among the exact top-`top` entries."""
    te, ta = exact.topk(top, dim=1).indices, approx.topk(top, dim=1).indices
    shared = (te.unsqueeze(2) == ta.unsqueeze(1)).any(2).float().mean(1)  # [B]
    change = (approx.gather(1, te) - exact.gather(1, te)).abs().max()
    return float(shared.mean()), float(change)


def random_inputs_table(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for k in args.labels:
        vocab, f = random_case(k, args.batch, args.dim, args.neighbors, device, seed=k)
        for ratio in args.transfer:
            torch.manual_seed(0)
            ist = IstModule(args.dim, hidden=args.hidden, mode="image", image_chunk=args.image_chunk).to(device).eval()
            scale_transfer(ist, f, vocab, ratio)
            times, out = {}, {}
            with torch.inference_mode(), autocast(device, args.precision):
                for m in [0, *args.top_m]:
                    ist.top_m = m
                    run = lambda: ist(f, vocab.text, vocab.edge_index, vocab.edge_weight)  # noqa: E731
                    out[m] = run().float()
                    times[m] = statistics.median(timed(run, device) for _ in range(args.iters))
                    print(f"  K={k} transfer {ratio} top_m {m}: {times[m]:.2f} s", file=sys.stderr, flush=True)
            for m in args.top_m:
                agree, change = top_agreement(out[0], out[m])
                ist.top_m = m
                with torch.inference_mode():
                    share = float(ist.propagated_mask(f, vocab.text, vocab.edge_index, vocab.edge_weight).float().mean())
                rows.append(
                    {
                        "labels": k,
                        "transfer": ratio,
                        "top_m": m,
                        "nodes_propagated": f"{100 * share:.1f}%",
                        f"top{TOP}_agreement": round(agree, 4),
                        f"max_change_top{TOP}": round(change, 4),
                        "score_spread": round(float(out[0].std()), 3),
                        "ist_exact_s": round(times[0], 3),
                        "ist_approx_s": round(times[m], 3),
                        "speedup": round(times[0] / times[m], 2),
                    }
                )
    return rows


FULL_ROW = "C2SRT (full)"  # the demo's row with ISR and IST in image mode


def resolve_checkpoint(path: Path) -> Path:
    """A model.safetensors, a run folder holding one, or a `c2srt demo` output folder (its
    "C2SRT (full)" row: the demo keeps the first seed's weights)."""
    from c2srt.miniworld.demo import slug

    if path.is_file():
        return path
    for candidate in (path / "model.safetensors", *sorted(path.glob(f"{slug(FULL_ROW)}/seed*/model.safetensors"))):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"{path}: no model.safetensors there (give the file, its run folder, or a `c2srt demo` output folder)")


def train_miniworld(cache: Path, out_dir: Path, *, quick: bool) -> Path:
    """The demo's "C2SRT (full)" row, seed 0, exact IST in training: returns its model.safetensors."""
    from c2srt.config import Cfg, merge_config
    from c2srt.miniworld.demo import base_config, demo_graph, load_demo_spec, row_config
    from c2srt.miniworld.pretrain import PretrainCfg, load_stand_in
    from c2srt.miniworld.world import MiniWorld
    from c2srt.training import fit

    world = MiniWorld(seed=0)
    ckpt, _ = load_stand_in(world, PretrainCfg(), cache_dir=cache, progress=True)
    spec = load_demo_spec()
    graph_cfg = merge_config(Cfg(), {"graph": base_config(spec, quick=quick)["graph"]}).graph
    graph = demo_graph(world.label_names, world.seen_names, cfg=graph_cfg, cache_dir=cache)
    row = next(r for r in spec["variants"] if r["name"] == FULL_ROW)
    cfg = row_config(spec, row, out_dir, quick=quick, seed=0, pretrained=str(ckpt), graph_path=str(graph), curves=False)
    if cfg.model.ist.mode != "image" or cfg.model.ist.top_m != 0:
        raise SystemExit(f"the demo's {FULL_ROW} row no longer trains exact image-mode IST: {cfg.model.ist}")
    return fit(cfg, progress=False)


@torch.no_grad()
def checkpoint_table(args: argparse.Namespace, checkpoint: Path, device: torch.device) -> list[dict]:
    """Exact vs approximate IST on a trained checkpoint's test split (one encoder pass per batch)."""
    from c2srt.checkpoint import load_checkpoint
    from c2srt.config import load_config
    from c2srt.data.base import build_dataset
    from c2srt.evaluate import BlockwiseEvaluator
    from c2srt.graph import CategoryGraph
    from c2srt.model import eval_transform

    model, info = load_checkpoint(checkpoint, device=device)
    if model.ist is None or model.cfg.ist.mode != "image":
        raise SystemExit(f"{checkpoint}: IST is not in image mode; nothing to compare")
    cfg = load_config(args.config) if args.config else info.cfg
    ds = build_dataset(cfg.data, "test", eval_transform(model))
    names, seen = list(ds.label_names), np.asarray(ds.seen_mask, dtype=bool)
    labels = model.label_set(names, CategoryGraph.from_dict(info.graph))
    modes = [0, *args.top_m]
    shares: dict[int, list[float]] = {m: [] for m in modes}
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=0)
    model.eval()
    with contextlib.ExitStack() as stack:
        evals = {
            m: stack.enter_context(BlockwiseEvaluator(cfg.eval.protocol, seen, ~seen, topk=tuple(cfg.eval.topk), empty=cfg.eval.empty))
            for m in modes
        }  # fmt: skip
        for batch in loader:
            x = batch["image"].to(device)
            with autocast(device, args.precision):
                g, patches = model.backbone.encode_image(x)
                f_img = model.head(g, patches, labels.text, need_features=True).f_img
                for m in modes:
                    model.ist.top_m = m
                    logits = model.ist(f_img, labels.text, labels.edge_index, labels.edge_weight)  # [B, K]: every block's columns
                    evals[m].update(logits.float().cpu(), batch["target"])
                    if m:
                        mask = model.ist.propagated_mask(f_img, labels.text, labels.edge_index, labels.edge_weight)
                        shares[m].append(float(mask.float().mean()))
        results = {m: ev.compute() for m, ev in evals.items()}
    keys = [k for k in results[0] if k.split("/")[0] in ("zsl", "gzsl") and (k.endswith("/mAP") or "/F1@" in k)]
    rows = []
    for m in modes:
        row = {"top_m": m or "exact", "labels": len(names), "nodes_propagated": f"{100 * np.mean(shares[m]):.1f}%" if m else "100%"}
        for k in keys:
            row[k] = round(100 * results[m][k], 2)
            if m:
                row[f"d {k}"] = round(100 * (results[m][k] - results[0][k]), 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", type=int, nargs="+", default=[7586, 1006], help="vocabulary sizes (random inputs)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dim", type=int, default=512, help="embedding width D (ViT-B/16: 512)")
    p.add_argument("--hidden", type=int, default=256, help="IST hidden width")
    p.add_argument("--neighbors", type=int, default=8, help="graph in-neighbours per label")
    p.add_argument("--transfer", type=float, nargs="+", default=[0.25, 1.0], help="|W_o h| / |f| of the random IST")
    p.add_argument("--top-m", type=int, nargs="+", default=[32, 64], help="approximate modes to compare")
    p.add_argument("--image-chunk", type=int, default=16)
    p.add_argument("--iters", type=int, default=1, help="timed runs per mode")
    p.add_argument("--random-only", action="store_true", help="part 1 only")
    p.add_argument("--skip-random", action="store_true", help="part 2 only")
    p.add_argument("--checkpoint", type=Path, help="part 2: a model with IST in image mode (file, run folder or demo output folder)")
    p.add_argument("--config", type=Path, help="part 2: data/eval config (default: the checkpoint's)")
    p.add_argument("--miniworld", action="store_true", help="part 2 without --checkpoint: train the demo's C2SRT (full) row first")
    p.add_argument("--cache", type=Path, default=cache_root())
    p.add_argument("--run-dir", type=Path, default=Path("runs/ist_approx"), help="where --miniworld trains")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the script runs")
    add_device_args(p)
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.smoke:
        args.labels, args.batch, args.dim, args.hidden, args.top_m, args.transfer = [300], 4, 64, 32, [8], [1.0]
    device = resolve_device(args.device)
    env = run_environment(device)

    if not args.skip_random:
        rows = random_inputs_table(args, device)
        print_rows(rows)
        tag = f"ist_approx_random_k{'-'.join(map(str, args.labels))}_b{args.batch}_{args.precision}_{env['git_sha']}_{device.type}"
        write_rows(args.out_dir, tag, rows, args=vars(args), environment={**env, "load_1min_after": f"{os.getloadavg()[0]:.2f}"})
    if args.random_only:
        return 0
    checkpoint = resolve_checkpoint(args.checkpoint) if args.checkpoint else None
    if checkpoint is None and args.miniworld:
        checkpoint = train_miniworld(args.cache, args.run_dir, quick=args.smoke)
    if checkpoint is None:
        return 0
    rows = checkpoint_table(args, checkpoint, device)
    print()
    print_rows(rows)
    tag = f"ist_approx_checkpoint_{'-'.join(checkpoint.parent.parts[-2:])}_{args.precision}_{env['git_sha']}_{device.type}"
    write_rows(args.out_dir, tag, rows, args=vars(args), checkpoint=str(checkpoint), environment=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
