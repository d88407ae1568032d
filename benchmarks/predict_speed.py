"""Images/s of `c2srt predict` (the `Recognizer`) for ViT-B/16 at batch 32, with 81 and 1,006 labels.

Two models, both randomly initialised (offline; speed does not depend on the weights):
- "zero-shot CLIP + ISR": `Recognizer.from_clip("ViT-B-16", None)` (plain CLIP, ISR head, no IST);
- "C2SRT ISR + IST label": a c2srt model (ISR head, IST in label mode) from `create_model`, whose
  category graph is built on the fly from the embedding source, as `c2srt predict` does for labels
  a checkpoint lacks.

The throughput is end to end, as `c2srt predict` runs once its vocabulary is ready: PIL images
(synthetic 224 px noise) -> transform -> forward -> ranked top-5 labels. The one-off cost of a new
vocabulary is reported apart, in its parts: label embedding (CLIP text tower over the prompts),
graph build (IST only) and the IST label refinement (GATv2 over the graph, IST only). Each model
runs `--warmup` untimed batches first; then, per vocabulary, one untimed single image primes the
vocabulary and `--iters` timed batches follow. The table gives the median. The machine load
(1-minute load average) is recorded before and after: these machines are shared.

`--precision bf16` wraps the calls in autocast here (`c2srt predict` itself runs in fp32).

    python benchmarks/predict_speed.py                              # defaults below
    python benchmarks/predict_speed.py --iters 1 --labels 81        # a quicker look
    python benchmarks/predict_speed.py --device cuda --precision bf16
    python benchmarks/predict_speed.py --smoke                      # tiny: does it run?
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import add_device_args, autocast, resolve_device, timed, write_rows  # noqa: E402
from eval_scale import RESULTS_DIR, environment  # noqa: E402

from c2srt.config import HeadCfg, IstCfg, ModelCfg  # noqa: E402
from c2srt.model import create_model  # noqa: E402
from c2srt.predict import Recognizer  # noqa: E402

DEFAULT_BACKBONE = "ViT-B-16"
DEFAULT_BATCH = 32
DEFAULT_LABELS = (81, 1006)  # NUS-WIDE ZSL (unseen) and GZSL (seen + unseen)
DEFAULT_WARMUP = 1  # untimed batches per model
DEFAULT_ITERS = 2  # timed batches per (model, vocabulary)
IMAGE_SIDE = 224  # px, synthetic images
TOP = 5  # labels kept per image, as `c2srt predict` by default
CONFIGS = ("zero-shot CLIP + ISR", "C2SRT ISR + IST label")



def build(name: str, backbone: str, device: str) -> Recognizer:
    if name == "zero-shot CLIP + ISR":
        return Recognizer.from_clip(backbone, None, head="isr", device=device)
    cfg = ModelCfg(backbone=backbone, pretrained=None, distill=False, head=HeadCfg(name="isr"), ist=IstCfg(mode="label"))
    return Recognizer(create_model(cfg, device=device, teacher=False), device=device)


def synthetic_images(n: int, seed: int) -> list:
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)) for _ in range(n)]


def vocabulary_names(k: int) -> list[str]:
    return [f"concept {i:04d}" for i in range(k)]


@torch.no_grad()
def vocabulary_cost(rec: Recognizer, names: list[str], device: torch.device) -> dict[str, float]:
    """Seconds for a new vocabulary: label embedding, graph build and IST refinement (once each)."""
    rec.model.label_encoder.clear_cache()
    cost = {"embed_s": timed(lambda: rec.model.label_encoder.encode_labels(names), device), "graph_s": 0.0, "refine_s": 0.0}
    if rec.model.ist is not None:
        cost["graph_s"] = timed(lambda: rec.graph_for(names), device)  # reuses the cached embeddings
        vocab = rec.vocabulary(names)
        cost["refine_s"] = timed(lambda: rec.model.ist.refine_labels(vocab.text, vocab.edge_index, vocab.edge_weight), device)
    cost["vocab_s"] = sum(cost.values())
    return cost


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--labels", type=int, nargs="+", default=list(DEFAULT_LABELS))
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed batches per model")
    p.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="timed batches per model and vocabulary")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--smoke", action="store_true", help="tiny backbone and sizes, to check that the script runs")
    add_device_args(p)
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.smoke:
        args.backbone, args.batch, args.labels, args.warmup, args.iters = "test-tiny", 4, [20], 0, 1
    if args.batch < 1 or args.iters < 1 or args.warmup < 0 or min(args.labels) < 1:
        p.error("need --batch >= 1, --iters >= 1, --warmup >= 0 and label counts >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    env = environment()
    env.update(torch_threads=str(torch.get_num_threads()), device=str(device), precision=args.precision)
    if device.type == "cuda":
        env["cuda"] = str(torch.version.cuda)
        env["gpu"] = torch.cuda.get_device_name(device)
    load_start = os.getloadavg()[0]
    images = synthetic_images(args.batch, seed=0)
    rows = []
    for config in args.configs:
        torch.manual_seed(0)
        rec = build(config, args.backbone, args.device)
        for v, k in enumerate(args.labels):
            names = vocabulary_names(k)
            row = {"config": config, "labels": k, "batch": args.batch, **vocabulary_cost(rec, names, device)}
            with autocast(device, args.precision):
                if v == 0:
                    for _ in range(args.warmup):
                        rec.predict(images, names, top=TOP, batch_size=args.batch)
                rec.predict(images[:1], names, top=TOP)  # primes the vocabulary (cached for what follows)
                times = [timed(lambda rec=rec, names=names: rec.predict(images, names, top=TOP, batch_size=args.batch), device) for _ in range(args.iters)]
            sec = statistics.median(times)
            row.update(s_per_batch=sec, images_per_s=args.batch / sec, load_1min=os.getloadavg()[0])
            rows.append(row)
            print(
                f"{config:<24} K={k:<5} {row['images_per_s']:6.2f} img/s ({sec:.1f} s/batch); "
                f"vocabulary {row['vocab_s']:.2f} s; load {row['load_1min']:.1f}",
                flush=True,
            )
        del rec
    run = {
        "backbone": args.backbone,
        "batch": args.batch,
        "warmup": args.warmup,
        "iters": args.iters,
        "image_side": IMAGE_SIDE,
        "load_1min_start": round(load_start, 2),
        "load_1min_end": round(os.getloadavg()[0], 2),
    }

    cols = ["config", "labels", "batch", "images_per_s", "s_per_batch", "embed_s", "graph_s", "refine_s", "vocab_s", "load_1min"]
    head = f"{'config':<24} {'labels':>6} {'batch':>5} {'img/s':>7} {'s/batch':>8} {'embed s':>8} {'graph s':>8} {'refine s':>9} {'vocab s':>8} {'load':>5}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['config']:<24} {r['labels']:>6} {r['batch']:>5} {r['images_per_s']:>7.2f} {r['s_per_batch']:>8.2f} "
            f"{r['embed_s']:>8.2f} {r['graph_s']:>8.3f} {r['refine_s']:>9.3f} {r['vocab_s']:>8.2f} {r['load_1min']:>5.1f}"
        )
    print()
    width = max(len(k) for k in [*run, *env])
    for key, value in [*run.items(), *env.items()]:
        print(f"{key.ljust(width)}  {value}")

    tag = f"predict_speed_{args.backbone}_b{args.batch}_{args.precision}_{env['git_sha']}_torch{env['torch']}_{device.type}"
    rounded = [{c: (round(r[c], 4) if isinstance(r[c], float) else r[c]) for c in cols} for r in rows]
    write_rows(args.out_dir, tag, rounded, run=run, environment=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
