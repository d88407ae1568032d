"""Inference cost of the heads: bare CLIP image encoding vs MKT vs C2SRT (ISR, IST off/label/image).

ViT-B/16 (random init, offline) at batch 32 and 224 px, with NUS-WIDE's 1,006 and Open Images'
7,586 labels. Label embeddings and the category graph are computed once per vocabulary (not per
batch), so they are synthetic here: random unit vectors and a random graph of about
`--neighbors` correlated labels per category. IST in image mode runs twice: exact (top_m 0) and
approximate (`--top-m` candidates per image plus their graph neighbours). All variants share one
image tower (only heads differ), so the process holds one model, as `c2srt predict` does.

Each timed iteration runs every variant once, in turn, so machine load affects them alike; the
table gives the median time, its ratio to bare encoding, and the peak memory of the variant (CUDA:
max allocated; CPU: peak resident set of the process sampled while it runs, and its rise over the
resident set before the call). A second, less noisy estimate times the heads alone on the stored
features of the encoder: ratio = 1 + head / bare. `--heads-only` skips the end-to-end runs (bare
encoding is still timed), which on a loaded CPU is the figure to read.

    python benchmarks/heads_overhead.py                                  # defaults below
    python benchmarks/heads_overhead.py --heads-only --iters 3           # CPU
    python benchmarks/heads_overhead.py --device cuda --precision bf16   # GPU
    python benchmarks/heads_overhead.py --smoke                          # tiny: does it run?
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import add_device_args, autocast, print_rows, resolve_device, run_environment, timed, write_rows  # noqa: E402
from eval_scale import RESULTS_DIR  # noqa: E402

from c2srt.config import HeadCfg, IstCfg, ModelCfg  # noqa: E402
from c2srt.model import C2SRT, LabelSet, create_model  # noqa: E402

DEFAULT_BACKBONE = "ViT-B-16"
DEFAULT_BATCH = 32
DEFAULT_LABELS = (1006, 7586)  # NUS-WIDE GZSL, Open Images seen + unseen
DEFAULT_NEIGHBORS = 8  # graph out-degree per category
DEFAULT_TOP_M = 32  # candidates per image of the approximate IST image mode (configs/open_images)
BARE = "bare CLIP encode_image"
IMAGE_EXACT = "C2SRT ISR + IST image (exact)"
IMAGE_TOP_M = "C2SRT ISR + IST image (top_m)"
VARIANTS: dict[str, tuple[str | None, str]] = {  # name -> (head, IST mode); head None: bare encoding
    BARE: (None, "off"),
    "MKT": ("mkt", "off"),
    "C2SRT ISR (IST off)": ("isr", "off"),
    "C2SRT ISR + IST label": ("isr", "label"),
    IMAGE_EXACT: ("isr", "image"),
    IMAGE_TOP_M: ("isr", "image"),
}
TARGETS = {1006: {IMAGE_EXACT: 1.2, IMAGE_TOP_M: 1.2}, 7586: {IMAGE_EXACT: 1.5, IMAGE_TOP_M: 1.5}}  # issue 16


class PeakMemory:
    """Peak memory while a block runs: CUDA max allocated, or resident set sampled from /proc."""

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device, self.interval_s, self.peak_mb = device, interval_s, 0.0
        self._stop = threading.Event()

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self.rss_mb())



def random_vocabulary(k: int, dim: int, neighbors: int, device: torch.device, seed: int) -> LabelSet:
    g = torch.Generator().manual_seed(seed)
    text = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=-1)
    dst = torch.arange(k).repeat_interleave(neighbors)  # each category ...
    src = (dst + 1 + torch.randint(0, k - 1, (k * neighbors,), generator=g)) % k  # ... gets `neighbors` others
    weight = torch.rand(k * neighbors, generator=g) * 0.9 + 0.1
    return LabelSet([f"label {i}" for i in range(k)], text.to(device), torch.stack([src, dst]).to(device), weight.to(device))


def build_models(backbone: str, top_m: int, device: torch.device, names: list[str]) -> dict[str, C2SRT]:
    """The variants `names` on one shared image tower (speed does not depend on the weights)."""
    models: dict[str, C2SRT] = {}
    shared = None
    for name, (head, ist) in VARIANTS.items():
        if name not in names:
            continue
        ist_cfg = IstCfg(mode=ist, top_m=top_m if name == IMAGE_TOP_M else 0)
        cfg = ModelCfg(backbone=backbone, pretrained=None, distill=False, head=HeadCfg(name=head or "mkt"), ist=ist_cfg)
        model = create_model(cfg, device=device, teacher=False).eval()
        if shared is None:
            shared = model.backbone
        model.backbone = shared
        models[name] = model
    return models


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--labels", type=int, nargs="+", default=list(DEFAULT_LABELS))
    p.add_argument("--neighbors", type=int, default=DEFAULT_NEIGHBORS)
    p.add_argument("--top-m", type=int, default=DEFAULT_TOP_M, help="candidates per image, approximate IST image mode")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per variant")
    p.add_argument("--iters", type=int, default=2, help="timed iterations per variant")
    p.add_argument("--heads-only", action="store_true", help="time the heads on stored features only (and bare encoding)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="subset (bare encoding always runs)")
    p.add_argument("--smoke", action="store_true", help="tiny backbone and sizes, to check that the script runs")
    add_device_args(p)
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.smoke:
        args.backbone, args.batch, args.labels, args.top_m, args.warmup, args.iters = "test-tiny", 4, [60, 300], 8, 0, 1
    device = resolve_device(args.device)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]

    variants = [BARE, *(v for v in VARIANTS if v in args.variants and v != BARE)]
    models = build_models(args.backbone, args.top_m, device, [*variants, "MKT", "C2SRT ISR + IST label"])
    first = models["MKT"]
    images = torch.randn(args.batch, 3, first.image_size, first.image_size, device=device)
    timed_end_to_end = [BARE] if args.heads_only else variants

    def run(name: str, labels: LabelSet) -> Callable[[], object]:
        model = models[name]
        if VARIANTS[name][0] is None:
            return lambda: model.backbone.visual(images)  # open_clip's own image encoder: pooled [B, D]
        return lambda: model(images, labels)

    def heads_only(name: str, labels: LabelSet, g: torch.Tensor, patches: torch.Tensor) -> Callable[[], object]:
        m, ist = models[name], VARIANTS[name][1]

        def go() -> None:
            out = m.head(g, patches, labels.text, need_features=m.ist is not None)
            if ist == "label":
                m.ist.score(out.f_img, m._refined(labels))
            elif ist == "image":
                m.ist(out.f_img, labels.text, labels.edge_index, labels.edge_weight)

        return go

    rows = []
    for k in args.labels:
        labels = random_vocabulary(k, first.backbone.embed_dim, args.neighbors, device, seed=k)
        times: dict[str, list[float]] = {n: [] for n in variants}
        head_times: dict[str, list[float]] = {n: [] for n in variants}
        peaks: dict[str, float] = {n: 0.0 for n in variants}
        rises: dict[str, float] = {n: 0.0 for n in variants}
        with torch.inference_mode(), autocast(device, args.precision):
            models["C2SRT ISR + IST label"]._refined(labels)  # once per vocabulary, like predict
            g, patches = first.backbone.encode_image(images)
            for it in range(args.warmup + args.iters):
                for name in variants:
                    fns = [("end", run(name, labels))] if name in timed_end_to_end else []
                    if VARIANTS[name][0] is not None:
                        fns.append(("head", heads_only(name, labels, g, patches)))
                    for kind, fn in fns:
                        before = PeakMemory.rss_mb() if device.type == "cpu" else 0.0
                        with PeakMemory(device) as mem:
                            dt = timed(fn, device)
                        peaks[name] = max(peaks[name], mem.peak_mb)
                        rises[name] = max(rises[name], mem.peak_mb - before)
                        if it >= args.warmup:
                            (times if kind == "end" else head_times)[name].append(dt)
                        print(f"  K={k} iter {it} {name} ({kind}): {dt:.2f} s", file=sys.stderr, flush=True)
        bare = statistics.median(times[BARE])
        for name in variants:
            t = statistics.median(times[name]) if times[name] else float("nan")
            hs = statistics.median(head_times[name]) if head_times[name] else 0.0
            rows.append(
                {
                    "labels": k,
                    "variant": name.replace("top_m)", f"top_m {args.top_m})"),
                    "s_per_batch": round(t, 3),
                    "images_per_s": round(args.batch / t, 2),
                    "ratio_to_bare": round(t / bare, 3),
                    "head_only_s": round(hs, 3),
                    "ratio_from_head_only": round(1 + hs / bare, 3),
                    "peak_mem_mb": round(peaks[name]),
                    "mem_rise_mb": round(rises[name]),
                    "target": TARGETS.get(k, {}).get(name, ""),
                }
            )

    env = run_environment(device, load_before)
    print_rows(rows)
    print(f"\nbackbone {args.backbone}, batch {args.batch}, {args.precision}, device {env['device']}, "
          f"{env['threads']} threads, load {env['load_1min_before']} -> {env['load_1min_after']}, "
          f"iters {args.iters} (+{args.warmup} warm-up){', heads only' if args.heads_only else ''}")
    ks = "-".join(map(str, args.labels))
    tag = f"heads_overhead_{args.backbone}_b{args.batch}_k{ks}_{args.precision}_{env['git_sha']}_torch{env['torch']}_{device.type}"
    write_rows(args.out_dir, tag, rows, args=vars(args), environment=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
