"""Inference cost of the heads: bare CLIP image encoding vs MKT vs C2SRT (ISR, IST off/label/image).

ViT-B/16 (random init, offline) at batch 32 and 224 px, with NUS-WIDE's 1,006 and Open Images'
7,586 labels. Label embeddings and the category graph are computed once per vocabulary (not per
batch), so they are synthetic here: random unit vectors and a random graph of about
`--neighbors` correlated labels per category. Each timed iteration runs every variant once, in
turn, so machine load affects them alike; the table gives the median time, its ratio to bare
encoding, and the peak memory of the variant (CUDA: max allocated; CPU: peak resident set sampled
while it runs). A second, less noisy estimate times the heads alone on the stored features of the
encoder: ratio = 1 + head / bare.

    python benchmarks/heads_overhead.py                          # defaults below
    python benchmarks/heads_overhead.py --batch 8 --iters 1     # a quicker look
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
from bench_io import device_name, print_rows, timed, write_rows  # noqa: E402
from eval_scale import RESULTS_DIR, environment  # noqa: E402

from c2srt.config import HeadCfg, IstCfg, ModelCfg  # noqa: E402
from c2srt.model import LabelSet, create_model  # noqa: E402

DEFAULT_BACKBONE = "ViT-B-16"
DEFAULT_BATCH = 32
DEFAULT_LABELS = (1006, 7586)  # NUS-WIDE GZSL, Open Images seen + unseen
DEFAULT_NEIGHBORS = 8  # graph out-degree per category
VARIANTS: dict[str, tuple[str | None, str]] = {  # name -> (head, IST mode); head None: bare encoding
    "bare CLIP encode_image": (None, "off"),
    "MKT": ("mkt", "off"),
    "C2SRT ISR (IST off)": ("isr", "off"),
    "C2SRT ISR + IST label": ("isr", "label"),
    "C2SRT ISR + IST image": ("isr", "image"),
}
TARGETS = {"C2SRT ISR + IST label": 1.15, "C2SRT ISR + IST image": 1.5}  # at 1,006 labels


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--labels", type=int, nargs="+", default=list(DEFAULT_LABELS))
    p.add_argument("--neighbors", type=int, default=DEFAULT_NEIGHBORS)
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per variant")
    p.add_argument("--iters", type=int, default=2, help="timed iterations per variant")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast dtype on CUDA")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    models = {}
    for name, (head, ist) in VARIANTS.items():
        cfg = ModelCfg(backbone=args.backbone, pretrained=None, distill=False, head=HeadCfg(name=head or "mkt"), ist=IstCfg(mode=ist))
        models[name] = create_model(cfg, device=device, teacher=False).eval()
    image_size = models["MKT"].image_size
    images = torch.randn(args.batch, 3, image_size, image_size, device=device)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)

    def run(name: str, labels: LabelSet) -> Callable[[], object]:
        model = models[name]
        if VARIANTS[name][0] is None:
            return lambda: model.backbone.visual(images)  # open_clip's own image encoder: pooled [B, D]
        return lambda: model(images, labels)

    rows = []
    for k in args.labels:
        labels = random_vocabulary(k, models["MKT"].backbone.embed_dim, args.neighbors, device, seed=k)
        times: dict[str, list[float]] = {n: [] for n in VARIANTS}
        peaks: dict[str, float] = {n: 0.0 for n in VARIANTS}
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            if models["C2SRT ISR + IST label"].ist is not None:
                models["C2SRT ISR + IST label"]._refined(labels)  # once per vocabulary, like predict
            for it in range(args.warmup + args.iters):
                for name in VARIANTS:
                    with PeakMemory(device) as mem:
                        dt = timed(run(name, labels), device)
                    peaks[name] = max(peaks[name], mem.peak_mb)
                    if it >= args.warmup:
                        times[name].append(dt)
                    print(f"  K={k} iter {it} {name}: {dt:.2f} s", file=sys.stderr, flush=True)
            # heads alone on stored encoder features (same work as above minus the encoder)
            g, patches = models["MKT"].backbone.encode_image(images)
            head_s = {}
            for name, (head, ist) in VARIANTS.items():
                if head is None:
                    continue
                m = models[name]

                def heads_only(m=m, ist=ist) -> None:
                    out = m.head(g, patches, labels.text, need_features=m.ist is not None)
                    if ist == "label":
                        m.ist.score(out.f_img, m._refined(labels))
                    elif ist == "image":
                        m.ist(out.f_img, labels.text, labels.edge_index, labels.edge_weight)

                head_s[name] = statistics.median(timed(heads_only, device) for _ in range(max(1, args.iters)))
        bare = statistics.median(times["bare CLIP encode_image"])
        for name in VARIANTS:
            t = statistics.median(times[name])
            hs = head_s.get(name, 0.0)
            rows.append(
                {
                    "labels": k,
                    "variant": name,
                    "s_per_batch": round(t, 3),
                    "images_per_s": round(args.batch / t, 2),
                    "ratio_to_bare": round(t / bare, 3),
                    "head_only_s": round(hs, 3),
                    "ratio_from_head_only": round(1 + hs / bare, 3),
                    "peak_mem_mb": round(peaks[name], 0),
                    "target": TARGETS.get(name, "") if k == 1006 else "",
                }
            )

    env = {**environment(), "device": device_name(device), "threads": str(torch.get_num_threads()),
           "load_1min": f"{os.getloadavg()[0]:.2f}"}
    print_rows(rows)
    print(f"\nbackbone {args.backbone}, batch {args.batch}, {args.precision}, device {env['device']}, "
          f"{env['threads']} threads, load {env['load_1min']}, iters {args.iters} (+{args.warmup} warm-up)")
    ks = "-".join(map(str, args.labels))
    tag = f"heads_overhead_{args.backbone}_b{args.batch}_k{ks}_{args.precision}_{env['git_sha']}_torch{env['torch']}_{device.type}"
    write_rows(args.out_dir, tag, rows, args=vars(args), environment=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
