"""Training-step cost: MKT vs C2SRT (ISR, IST off / label / image), forward + backward + AdamW step.

ViT-B/16 (random init, offline) at batch 32 and 224 px, with NUS-WIDE's 925 seen labels (training
scores seen labels only) or Open Images' 7,186 (`--labels 7186 --sparse`), and distillation on
(the frozen teacher runs on every batch), built with `create_model` exactly as `c2srt train`
builds it, and optimised with the same AdamW parameter groups (`c2srt.optim.optimizer_param_groups`:
last 2 blocks, layer-wise lr decay). All variants share one image tower (teacher included) and
differ in their heads, so the process holds one model, as a training run does; each has its own
optimiser. The loss is the training loss as `c2srt train` composes it (`c2srt.losses.training_loss`:
ranking loss + L1 distillation). Label embeddings come
from the frozen text tower once per vocabulary (not per step), so they are synthetic here: random
unit vectors named "label 17", and a random category graph of about `--neighbors` neighbours per
label for IST.

Targets: NUS-WIDE-like (default): `--positives` random positives per image, every other label
negative (fully annotated). Open Images-like (`--sparse`): 5 to 15 verified labels per image, 60 %
of them positive, everything else 0 (unknown), as in `eval_scale.py`.

Each timed iteration runs one step of every variant, in turn (round-robin), so machine load
affects them alike. The table gives the median s/step, images/s, the ratio to MKT, peak memory
(CUDA: max allocated; CPU: the peak resident set of the process sampled during the step, and its
rise over the resident set before the step), and the time one epoch of `--epoch-images` images
(Open Images' 1.7 M) would take at that speed. `--breakdown` adds a per-phase timing of one more
step per variant (student encoder, head, IST, teacher, loss, backward, optimizer).

    python benchmarks/train_step.py                                        # NUS-WIDE size, batch 32
    python benchmarks/train_step.py --labels 7186 --sparse --breakdown     # Open Images size
    python benchmarks/train_step.py --device cuda --precision bf16 --batch 64
    python benchmarks/train_step.py --smoke                                # tiny: does it run?
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
from bench_io import add_device_args, autocast, print_rows, resolve_device, run_environment, write_rows  # noqa: E402
from eval_scale import LABELS_PER_IMAGE, POSITIVE_FRACTION, RESULTS_DIR  # noqa: E402
from heads_overhead import PeakMemory, random_vocabulary  # noqa: E402

from c2srt.config import HeadCfg, IstCfg, ModelCfg, TrainCfg  # noqa: E402
from c2srt.constants import NEGATIVE, POSITIVE  # noqa: E402
from c2srt.losses import training_loss  # noqa: E402
from c2srt.model import C2SRT, LabelSet, create_model  # noqa: E402
from c2srt.optim import optimizer_param_groups  # noqa: E402

DEFAULT_BACKBONE = "ViT-B-16"
DEFAULT_BATCH = 32
NUS_WIDE_SEEN = 925  # seen labels scored in training
DEFAULT_NEIGHBORS = 8  # graph out-degree per category
DEFAULT_POSITIVES = 5  # positive labels per image (NUS-WIDE: about 2-3 of 81 concepts, more tags)
OPEN_IMAGES_TRAIN_IMAGES = 1_700_000  # images per epoch (Open Images v4 training set, about)
DEFAULT_TOP_M = 32  # candidates per image of the approximate IST image mode (configs/open_images)
BASELINE = "MKT"
IMAGE_TOP_M = "C2SRT ISR + IST image (top_m)"
VARIANTS: dict[str, tuple[str, str]] = {  # name -> (head, IST mode); distillation on for all
    "MKT": ("mkt", "off"),
    "C2SRT ISR (IST off)": ("isr", "off"),
    "C2SRT ISR + IST label": ("isr", "label"),
    "C2SRT ISR + IST image (exact)": ("isr", "image"),
    IMAGE_TOP_M: ("isr", "image"),
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


def sparse_targets(batch: int, k: int, seed: int, device: torch.device) -> torch.Tensor:
    """[B, K] long, Open Images-like: a handful of verified labels per row (+1 or -1), the rest 0."""
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros((batch, k), dtype=torch.long)
    lo, hi = LABELS_PER_IMAGE
    for row in range(batch):
        n = int(torch.randint(lo, hi + 1, (1,), generator=g))
        cols = torch.randperm(k, generator=g)[:n]
        target[row, cols] = torch.where(torch.rand(n, generator=g) < POSITIVE_FRACTION, POSITIVE, NEGATIVE)
    return target.to(device)


def make_step(
    model: C2SRT,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: LabelSet,
    target: torch.Tensor,
    precision: str,
) -> Callable[[], float]:
    """One training step as `C2SRTModule.training_step` + Lightning's automatic optimisation do it."""
    device = images.device

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            out = model(images, labels, with_teacher=True)
            loss = training_loss(out.logits, target, g=out.g, g_teacher=out.g_teacher, distill_weight=model.cfg.distill_weight).total
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def breakdown(
    model: C2SRT, opt: torch.optim.Optimizer, images: torch.Tensor, labels: LabelSet, target: torch.Tensor, precision: str
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
    with autocast(device, precision):
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
        w = model.cfg.distill_weight
        loss = clock("loss", lambda: training_loss(logits, target, g=g, g_teacher=g_t, distill_weight=w).total)
    clock("backward", loss.backward)
    clock("optimizer", opt.step)
    return phases


def build_models(args: argparse.Namespace, device: torch.device, tcfg: TrainCfg) -> tuple[dict[str, C2SRT], dict[str, torch.optim.Optimizer]]:
    """Every variant on one shared image tower (student and teacher), each with its own AdamW."""
    models: dict[str, C2SRT] = {}
    opts: dict[str, torch.optim.Optimizer] = {}
    shared = None
    for name in args.variants:
        head, ist = VARIANTS[name]
        ist_cfg = IstCfg(mode=ist, top_m=args.top_m if name == IMAGE_TOP_M else 0)
        cfg = ModelCfg(backbone=args.backbone, pretrained=None, distill=True, head=HeadCfg(name=head), ist=ist_cfg)
        model = create_model(cfg, device=device).train()
        if shared is None:
            shared = model.backbone
        model.backbone = shared
        models[name] = model
        opts[name] = torch.optim.AdamW(optimizer_param_groups(model, tcfg), lr=tcfg.lr)
        print(f"built {name}", file=sys.stderr, flush=True)
    return models, opts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="open_clip model name (random init)")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="images per step")
    p.add_argument("--labels", type=int, default=NUS_WIDE_SEEN, help="seen labels scored per step")
    p.add_argument("--neighbors", type=int, default=DEFAULT_NEIGHBORS, help="graph neighbours per label (IST)")
    p.add_argument("--positives", type=int, default=DEFAULT_POSITIVES, help="positive labels per image (dense targets)")
    p.add_argument("--sparse", action="store_true", help="Open Images-like targets: a handful of verified labels, the rest unknown")
    p.add_argument("--top-m", type=int, default=DEFAULT_TOP_M, help="candidates per image, approximate IST image mode")
    p.add_argument("--epoch-images", type=int, default=OPEN_IMAGES_TRAIN_IMAGES, help="images per epoch for the projection")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    p.add_argument("--iters", type=int, default=2, help="timed steps per variant")
    add_device_args(p)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--breakdown", action="store_true", help="also time each phase of one step per variant")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="subset to run")
    p.add_argument("--smoke", action="store_true", help="tiny backbone and sizes, to check that the script runs")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.smoke:
        args.backbone, args.batch, args.labels, args.top_m, args.warmup, args.iters = "test-tiny", 4, 300, 8, 0, 1
        args.breakdown = True
    if args.batch < 1 or args.iters < 1 or args.warmup < 0 or not 0 < args.positives < args.labels:
        p.error("need --batch >= 1, --iters >= 1, --warmup >= 0 and 0 < --positives < --labels")
    if BASELINE not in args.variants:
        args.variants = [BASELINE, *args.variants]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load_before = os.getloadavg()[0]

    torch.manual_seed(0)
    tcfg = TrainCfg()
    models, opts = build_models(args, device, tcfg)
    first = models[BASELINE]
    images = torch.randn(args.batch, 3, first.image_size, first.image_size, device=device)
    labels = random_vocabulary(args.labels, first.backbone.embed_dim, args.neighbors, device, seed=0)
    if args.sparse:
        target = sparse_targets(args.batch, args.labels, seed=1, device=device)
    else:
        target = synthetic_targets(args.batch, args.labels, args.positives, seed=1, device=device)
    steps = {n: make_step(models[n], opts[n], images, labels, target, args.precision) for n in args.variants}
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
            rises[name] = max(rises[name], mem.peak_mb - before)
            if it >= args.warmup:
                times[name].append(dt)
            tag = "warm-up" if it < args.warmup else "timed"
            print(f"  iter {it} ({tag}) {name}: {dt:.2f} s, loss {loss:.3f}", file=sys.stderr, flush=True)

    phases: dict[str, dict[str, float]] = {}
    if args.breakdown:
        for name in args.variants:
            phases[name] = breakdown(models[name], opts[name], images, labels, target, args.precision)
            print(f"  breakdown {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in phases[name].items()), file=sys.stderr)

    base = statistics.median(times[BASELINE])
    rows = []
    for name in args.variants:
        t = statistics.median(times[name])
        row = {
            "variant": name.replace("top_m)", f"top_m {args.top_m})"),
            "s_per_step": round(t, 3),
            "images_per_s": round(args.batch / t, 3),
            "ratio_to_mkt": round(t / base, 3),
            "target": "" if name == BASELINE else f"<= {TARGET_RATIO}",
            "peak_mem_mb": round(peaks[name]),
            "step_mem_rise_mb": round(rises[name]),
            f"epoch_h_{args.epoch_images // 1000}k": round(t * args.epoch_images / args.batch / 3600, 2),
            "trainable_params_m": round(n_trainable[name] / 1e6, 2),
            "timed_s": " ".join(f"{x:.2f}" for x in times[name]),
        }
        for k, v in phases.get(name, {}).items():
            row[f"{k}_s"] = round(v, 3)
        rows.append(row)

    env = run_environment(device, load_before)
    print_rows(rows)
    annotated = int((target != 0).sum())
    print(
        f"\n{args.backbone}, batch {args.batch}, {args.labels} labels ({annotated} annotated entries, "
        f"{'sparse' if args.sparse else 'dense'} targets), {args.neighbors} neighbours, {args.precision}, "
        f"device {env['device']}, {env['threads']} threads, load {env['load_1min_before']} -> {env['load_1min_after']}, "
        f"{args.iters} timed (+{args.warmup} warm-up) steps per variant, round-robin"
    )
    sparse = "_sparse" if args.sparse else ""
    tag = f"train_step_{args.backbone}_b{args.batch}_k{args.labels}{sparse}_{args.precision}_{env['git_sha']}_torch{env['torch']}_{device.type}"
    write_rows(args.out_dir, tag, rows, args=vars(args), environment=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
