"""Does data loading keep up? `c2srt eval` and `c2srt predict` on real JPEGs vs bare encoding, in one run.

Makes a folder of `--images` JPEGs from ../shared/data (COCO8 and the four photos: random crops of
40 to 100 % of the area, random flips, long side `--side` px, quality 90) with a JSONL listing and
a vocabulary of `--labels` labels, and a random-init checkpoint (`--backbone`, ISR head, IST off).
Then, in one process:

- bare encoding: open_clip's image tower on batches already decoded and in memory (`--batch`);
- model only: the whole model (encoder + ISR head over the vocabulary), same in-memory batches;
- `c2srt eval`: `evaluate_checkpoint` on the folder (its DataLoader: `--workers` processes, pinned
  memory on CUDA), timed from the end of its first batch to the end of its last (steady state:
  model and label set built, workers started), through a hook on the Lightning test step;
- `c2srt predict`: `Recognizer.iter_predict` on the folder (reading in `--workers` processes),
  timed from the end of the first batch to the last prediction.

The table gives images/s and the ratio to bare encoding (target: >= 0.90 for eval and predict) and
to the model alone (what loading itself costs). The verbs run in fp32, so the baseline does too;
`--precision bf16` adds bare bf16 encoding as information. Bare encoding is timed before and after
the verbs (the load on a shared machine drifts); the ratio uses their mean.

    python benchmarks/loading.py                                   # 320 images, ViT-B/16, 2 workers
    python benchmarks/loading.py --device cuda --workers 12 --images 3200
    python benchmarks/loading.py --smoke                           # tiny: does it run?
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import add_device_args, autocast, print_rows, resolve_device, run_environment, timed, write_rows  # noqa: E402
from eval_scale import RESULTS_DIR  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository (or beside the folder of git worktrees)
SHARED_DATA = next((c for c in (REPO.parent / "shared" / "data", REPO.parents[1] / "shared" / "data") if c.is_dir()), REPO.parent / "shared" / "data")
JPEG_QUALITY = 90
CROP_AREA = (0.4, 1.0)  # share of the source image kept by a random crop


def source_images(root: Path) -> list:
    """The shared photos as PIL images; drawn stand-ins (gradients and shapes) where they are missing."""
    from PIL import Image, ImageDraw

    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")) if root.is_dir() else []
    if found:
        return [Image.open(p).convert("RGB") for p in found]
    print(f"no JPEG under {root} (--shared-data): drawing 12 stand-in pictures instead", file=sys.stderr)
    rng = random.Random(1)
    drawn = []
    for _ in range(12):
        im = Image.linear_gradient("L").resize((800, 600)).convert("RGB")
        draw = ImageDraw.Draw(im)
        for _ in range(20):
            x, y, r = rng.randint(0, 800), rng.randint(0, 600), rng.randint(10, 150)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randint(0, 255) for _ in range(3)))
        drawn.append(im)
    return drawn


def make_folder(folder: Path, n: int, side: int, labels: list[str], shared: Path, seed: int = 0) -> Path:
    """`n` JPEGs (crops and flips of the shared photos) and `test.jsonl`, `seen.txt`, `unseen.txt`."""
    from PIL import Image, ImageOps

    listing = folder / "test.jsonl"
    if listing.is_file() and sum(1 for _ in listing.open()) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sources = source_images(shared)
    rows = []
    for i in range(n):
        im = sources[i % len(sources)]
        w, h = im.size
        area = rng.uniform(*CROP_AREA)
        cw, ch = max(16, int(w * area**0.5)), max(16, int(h * area**0.5))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        scale = side / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.BICUBIC)
        name = f"img_{i:05d}.jpg"
        crop.save(folder / name, quality=JPEG_QUALITY)
        rows.append({"image": name, "labels": rng.sample(labels, 3)})
    n_seen = len(labels) * 9 // 10
    (folder / "seen.txt").write_text("\n".join(labels[:n_seen]) + "\n")
    (folder / "unseen.txt").write_text("\n".join(labels[n_seen:]) + "\n")
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def make_checkpoint(path: Path, backbone: str, labels: list[str]) -> Path:
    from c2srt.checkpoint import save_checkpoint
    from c2srt.config import Cfg, HeadCfg, IstCfg, ModelCfg
    from c2srt.model import create_model

    torch.manual_seed(0)
    mcfg = ModelCfg(backbone=backbone, pretrained=None, distill=False, head=HeadCfg(name="isr"), ist=IstCfg(mode="off"))
    model = create_model(mcfg, teacher=False)
    n_seen = len(labels) * 9 // 10
    return save_checkpoint(path, model, Cfg(model=mcfg), seen=labels[:n_seen], unseen=labels[n_seen:])


def steady_rate(stamps: list[tuple[float, int]]) -> float:
    """Images/s from (time, images done so far) stamps: from the first stamp to the last."""
    (t0, n0), (t1, n1) = stamps[0], stamps[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def time_eval(checkpoint: Path, folder: Path, args: argparse.Namespace, device: torch.device) -> float:
    """`c2srt eval`'s images/s in steady state, through a hook on the one evaluation step (`EvalPass.update`)."""
    import c2srt.evaluate as evaluate
    from c2srt.checkpoint import read_checkpoint_info
    from c2srt.config import merge_config

    info = read_checkpoint_info(checkpoint)
    cfg = merge_config(
        info.cfg,
        {
            "data": {"name": "jsonl", "root": str(folder), "num_workers": args.workers, "batch_size": args.batch},
            "eval": {"batch_size": args.batch, "protocol": "generic"},
            "train": {"accelerator": "gpu" if device.type == "cuda" else "cpu"},
            "output_dir": str(folder / "eval"),
        },
    )
    stamps: list[tuple[float, int]] = []
    original = evaluate.EvalPass.update

    def update(self, scores, target, **kw):  # noqa: ANN001, ANN003, ANN202
        out = original(self, scores, target, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append((time.perf_counter(), (stamps[-1][1] if stamps else 0) + len(target)))
        return out

    evaluate.EvalPass.update = update
    try:
        evaluate.evaluate_checkpoint(checkpoint, cfg, output_dir=folder / "eval", progress=False)
    finally:
        evaluate.EvalPass.update = original
    return steady_rate(stamps)


def time_predict(checkpoint: Path, folder: Path, labels: list[str], args: argparse.Namespace, device: torch.device) -> float:
    from c2srt.predict import Recognizer

    rec = Recognizer.from_checkpoint(checkpoint, device=device)
    stamps: list[tuple[float, int]] = []
    for i, _ in enumerate(rec.iter_predict([folder], labels, batch_size=args.batch, workers=args.workers), 1):
        if i % args.batch == 0 or i == args.images:  # a batch's predictions come out together
            stamps.append((time.perf_counter(), i))
    return steady_rate(stamps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="ViT-B-16")
    p.add_argument("--images", type=int, default=320, help="JPEGs in the folder")
    p.add_argument("--side", type=int, default=640, help="long side of the JPEGs, px")
    p.add_argument("--labels", type=int, default=1006, help="vocabulary size")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)), help="loader processes")
    p.add_argument("--iters", type=int, default=3, help="timed in-memory batches per baseline")
    p.add_argument("--folder", type=Path, default=None, help="where the JPEGs go (default: /tmp/c2srt-loading-<images>-<side>)")
    p.add_argument("--shared-data", type=Path, default=SHARED_DATA)
    p.add_argument("--smoke", action="store_true", help="tiny backbone and sizes, to check that the script runs")
    add_device_args(p)
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.smoke:
        args.backbone, args.images, args.labels, args.batch, args.iters = "test-tiny", 24, 20, 8, 1
    if args.images < 2 * args.batch:
        p.error("need --images >= 2 x --batch (the first batch is not timed)")
    device = resolve_device(args.device)
    load_before = os.getloadavg()[0]
    labels = [f"label {i:04d}" for i in range(args.labels)]
    folder = args.folder or Path(f"/tmp/c2srt-loading-{args.images}-{args.side}")
    make_folder(folder, args.images, args.side, labels, args.shared_data)
    checkpoint = make_checkpoint(folder / f"model-{args.backbone}-{args.labels}.safetensors", args.backbone, labels)

    from c2srt.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint, device=device)
    model.eval()
    x = torch.randn(args.batch, 3, model.image_size, model.image_size, device=device)
    vocab = model.label_set(labels)

    def bare(precision: str = "fp32") -> float:
        with torch.inference_mode(), autocast(device, precision):
            model.backbone.visual(x)  # warm-up
            return args.batch / statistics.median(timed(lambda: model.backbone.visual(x), device) for _ in range(args.iters))

    def model_only() -> float:
        with torch.inference_mode():
            model(x, vocab)
            return args.batch / statistics.median(timed(lambda: model(x, vocab), device) for _ in range(args.iters))

    rates = {"bare encoding (before)": bare(), "model only (encoder + ISR head)": model_only()}
    print(f"  in memory: {rates}", file=sys.stderr, flush=True)
    rates["c2srt eval"] = time_eval(checkpoint, folder, args, device)
    print(f"  eval: {rates['c2srt eval']:.2f} img/s", file=sys.stderr, flush=True)
    rates["c2srt predict"] = time_predict(checkpoint, folder, labels, args, device)
    print(f"  predict: {rates['c2srt predict']:.2f} img/s", file=sys.stderr, flush=True)
    rates["bare encoding (after)"] = bare()
    if args.precision != "fp32":
        rates[f"bare encoding {args.precision} (information)"] = bare(args.precision)
    base = (rates["bare encoding (before)"] + rates["bare encoding (after)"]) / 2
    only = rates["model only (encoder + ISR head)"]
    rows = [
        {
            "what": name,
            "images_per_s": round(r, 2),
            "ratio_to_bare": round(r / base, 3),
            "ratio_to_model_only": round(r / only, 3),
            "target": ">= 0.90" if name.startswith("c2srt") else "",
        }
        for name, r in rates.items()
    ]
    env = run_environment(device, load_before)
    print_rows(rows)
    print(
        f"\n{args.backbone}, batch {args.batch}, {args.labels} labels, {args.images} JPEGs (long side {args.side} px) in {folder}, "
        f"{args.workers} workers, device {env['device']}, {env['threads']} threads, load {env['load_1min_before']} -> {env['load_1min_after']}"
    )
    tag = f"loading_{args.backbone}_b{args.batch}_n{args.images}_w{args.workers}_{env['git_sha']}_{device.type}"
    write_rows(args.out_dir, tag, rows, args=vars(args), environment=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
