"""Training-step cost: MKT vs C2SRT (ISR, IST off / label / image), forward + backward + AdamW step.

ViT-B/16 (random init, offline) at batch 32 and 224 px, with NUS-WIDE's 925 seen labels (training
scores seen labels only) and distillation on (the frozen teacher runs on every batch), built with
`create_model` exactly as `c2srt train` builds it, and optimised with the same AdamW parameter
groups (`c2srt.train.optimizer_param_groups`: last 2 blocks, layer-wise lr decay). The loss is
the training loss: ranking loss + L1 distillation. Label embeddings come from the frozen text tower
once per vocabulary (not per step), so they are synthetic here: random unit vectors named
"label 17", and a random category graph of about `--neighbors` neighbours per label for IST.
Targets: `--positives` random positives per image, every other label negative (NUS-WIDE is fully
annotated).

Each timed iteration runs one step of every variant, in turn (round-robin), so machine load
affects them alike. The table gives the median s/step, images/s, the ratio to MKT (target: C2SRT
<= 1.25x MKT), and peak memory: CUDA max allocated, or on CPU the peak resident set of the
process sampled during the step and its rise over the resident set before the step.
`--breakdown` adds a per-phase timing of one more step per variant (student encoder, head, IST,
teacher, loss, backward, optimizer), to see which part costs what.

    python benchmarks/train_step.py                                  # batch 32, 1 warm-up, 2 timed
    python benchmarks/train_step.py --batch 8 --breakdown            # a quicker look on CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import device_name, print_rows, write_rows  # noqa: E402
from eval_scale import RESULTS_DIR, environment  # noqa: E402
from heads_overhead import PeakMemory, random_vocabulary  # noqa: E402

from c2srt.config import HeadCfg, IstCfg, ModelCfg, TrainCfg  # noqa: E402
from c2srt.constants import NEGATIVE, POSITIVE  # noqa: E402
from c2srt.losses import distillation_loss, ranking_loss  # noqa: E402
from c2srt.model import C2SRT, LabelSet, create_model  # noqa: E402
from c2srt.train import optimizer_param_groups  # noqa: E402

DEFAULT_BACKBONE = "ViT-B-16"
DEFAULT_BATCH = 32
NUS_WIDE_SEEN = 925  # seen labels scored in training
DEFAULT_NEIGHBORS = 8  # graph out-degree per category
DEFAULT_POSITIVES = 5  # positive labels per image (NUS-WIDE: about 2-3 of 81 concepts, more tags)
BASELINE = "MKT"
VARIANTS: dict[str, tuple[str, str]] = {  # name -> (head, IST mode); distillation on for all
    "MKT": ("mkt", "off"),
    "C2SRT ISR (IST off)": ("isr", "off"),
    "C2SRT ISR + IST label": ("isr", "label"),
    "C2SRT ISR + IST image": ("isr", "image"),
}
TARGET_RATIO = 1.25  # C2SRT step <= 1.25x MKT step (issue 5)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_targets(batch: int, k: int, positives: int, seed: int, device: torch.device) -> torch.Tensor:
    """[B, K] long: `positives` random +1 per row, every other entry -1."""
    g = torch.Generator().manual_seed(seed)
    target = torch.full((batch, k), NEGATIVE, dtype=torch.long)
    pos = torch.rand(batch, k, generator=g).argsort(dim=1)[:, :positives]  # [B, P] distinct columns
    target.scatter_(1, pos, POSITIVE)
    return target.to(device)


def make_step(
    model: C2SRT,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: LabelSet,
    target: torch.Tensor,
    amp: torch.dtype | None,
) -> Callable[[], float]:
    """One training step as `C2SRTModule.training_step` + Lightning's automatic optimisation do it."""
    device = images.device

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = model(images, labels, with_teacher=True)
            loss = ranking_loss(out.logits, target) + model.cfg.distill_weight * distillation_loss(out.g, out.g_teacher)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def breakdown(
    model: C2SRT, opt: torch.optim.Optimizer, images: torch.Tensor, labels: LabelSet, target: torch.Tensor, amp: torch.dtype | None
) -> dict[str, float]:
    """Seconds per phase of one step, the same calls as `C2SRT.forward`, with a sync between phases."""
    device = images.device
    phases: dict[str, float] = {}

    def clock(name: str, fn: Callable[[], object]) -> object:
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
        return result

    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        g, patches = clock("encoder", lambda: model.backbone.encode_image(images))
        need = model.ist is not None
        out = clock("head", lambda: model.head(g, patches, labels.text, need_features=need))
        logits = out.logits
        if model.ist is not None:
            if model.cfg.ist.mode == "label":
                logits = clock("ist", lambda: model.ist.score(out.f_img, model._refined(labels)))
            else:
                logits = clock("ist", lambda: model.ist(out.f_img, labels.text, labels.edge_index, labels.edge_weight))
        g_t = clock("teacher", lambda: model.backbone.encode_teacher(images))
        loss = clock("loss", lambda: ranking_loss(logits, target) + distillation_loss(g, g_t))
    clock("backward", loss.backward)
    clock("optimizer", opt.step)
    return phases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="open_clip model name (random init)")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="images per step")
    p.add_argument("--labels", type=int, default=NUS_WIDE_SEEN, help="seen labels scored per step")
    p.add_argument("--neighbors", type=int, default=DEFAULT_NEIGHBORS, help="graph neighbours per label (IST)")
    p.add_argument("--positives", type=int, default=DEFAULT_POSITIVES, help="positive labels per image")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    p.add_argument("--iters", type=int, default=2, help="timed steps per variant")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast dtype (CUDA)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--breakdown", action="store_true", help="also time each phase of one step per variant")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="subset to run")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.batch < 1 or args.iters < 1 or args.warmup < 0 or not 0 < args.positives < args.labels:
        p.error("need --batch >= 1, --iters >= 1, --warmup >= 0 and 0 < --positives < --labels")
    if BASELINE not in args.variants:
        args.variants = [BASELINE, *args.variants]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    load_before = os.getloadavg()[0]

    torch.manual_seed(0)
    tcfg = TrainCfg()
    models: dict[str, C2SRT] = {}
    opts: dict[str, torch.optim.Optimizer] = {}
    for name in args.variants:
        head, ist = VARIANTS[name]
        cfg = ModelCfg(backbone=args.backbone, pretrained=None, distill=True, head=HeadCfg(name=head), ist=IstCfg(mode=ist))
        models[name] = create_model(cfg, device=device).train()
        opts[name] = torch.optim.AdamW(optimizer_param_groups(models[name], tcfg), lr=tcfg.lr)
        print(f"built {name}", file=sys.stderr, flush=True)
    first = models[BASELINE]
    images = torch.randn(args.batch, 3, first.image_size, first.image_size, device=device)
    labels = random_vocabulary(args.labels, first.backbone.embed_dim, args.neighbors, device, seed=0)
    target = synthetic_targets(args.batch, args.labels, args.positives, seed=1, device=device)
    steps = {n: make_step(models[n], opts[n], images, labels, target, amp) for n in args.variants}
    n_trainable = {n: sum(q.numel() for q in m.parameters() if q.requires_grad) for n, m in models.items()}

    times: dict[str, list[float]] = {n: [] for n in args.variants}
    peaks: dict[str, float] = {n: 0.0 for n in args.variants}
    rises: dict[str, float] = {n: 0.0 for n in args.variants}
    for it in range(args.warmup + args.iters):
        for name in args.variants:  # round-robin: every variant once per iteration
            before = PeakMemory.rss_mb() if device.type == "cpu" else 0.0
            with PeakMemory(device) as mem:
                sync(device)
                t0 = time.perf_counter()
                loss = steps[name]()
                sync(device)
                dt = time.perf_counter() - t0
            peaks[name] = max(peaks[name], mem.peak_mb)
            rises[name] = max(rises[name], mem.peak_mb - before) if device.type == "cpu" else 0.0
            if it >= args.warmup:
                times[name].append(dt)
            tag = "warm-up" if it < args.warmup else "timed"
            print(f"  iter {it} ({tag}) {name}: {dt:.2f} s, loss {loss:.3f}", file=sys.stderr, flush=True)

    phases: dict[str, dict[str, float]] = {}
    if args.breakdown:
        for name in args.variants:
            phases[name] = breakdown(models[name], opts[name], images, labels, target, amp)
            print(f"  breakdown {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in phases[name].items()), file=sys.stderr)

    base = statistics.median(times[BASELINE])
    rows = []
    for name in args.variants:
        t = statistics.median(times[name])
        row = {
            "variant": name,
            "s_per_step": round(t, 3),
            "images_per_s": round(args.batch / t, 3),
            "ratio_to_mkt": round(t / base, 3),
            "target": "" if name == BASELINE else f"<= {TARGET_RATIO}",
            "peak_mem_mb": round(peaks[name]),
            "step_mem_rise_mb": round(rises[name]) if device.type == "cpu" else "",
            "trainable_params_m": round(n_trainable[name] / 1e6, 2),
            "timed_s": " ".join(f"{x:.2f}" for x in times[name]),
        }
        for k, v in phases.get(name, {}).items():
            row[f"{k}_s"] = round(v, 3)
        rows.append(row)

    env = {
        **environment(),
        "device": device_name(device),
        "threads": str(torch.get_num_threads()),
        "load_1min_before": f"{load_before:.2f}",
        "load_1min_after": f"{os.getloadavg()[0]:.2f}",
    }
    print_rows(rows)
    print(
        f"\n{args.backbone}, batch {args.batch}, {args.labels} labels, {args.neighbors} neighbours, {args.precision}, "
        f"device {env['device']}, {env['threads']} threads, load {env['load_1min_before']} -> {env['load_1min_after']}, "
        f"{args.iters} timed (+{args.warmup} warm-up) steps per variant, round-robin"
    )
    tag = f"train_step_{args.backbone}_b{args.batch}_k{args.labels}_{args.precision}_{env['git_sha']}_torch{env['torch']}_{device.type}"
    write_rows(args.out_dir, tag, rows, args=vars(args), environment=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
