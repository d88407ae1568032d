"""Open Images-scale evaluation: wall time and peak memory of the streaming evaluator.

Generates random scores and *sparse* labels of the Open Images v4 test size (125,436 images x
7,586 labels: 7,186 seen then 400 unseen), chunk by chunk (the full matrix never exists), streams
them into `c2srt.protocol.StreamingEvaluator` with the full Open Images protocol (per-class,
weighted and row-pooled mAP; P/R/F1 at K = 10, 20; blocks zsl / gzsl / seen), then prints the
figures, the time and the peak resident memory, and writes them (JSON + CSV) to
benchmarks/results/ with the environment in the file name.

Each image carries a handful (uniform in [--labels-min, --labels-max]) of verified labels, each +1
or -1, about one in ten of them among the unseen columns; everything else is 0 (unknown).
Positive entries get a score bonus so that the figures are not those of chance.

The evaluator is numpy on the CPU: `--device` and `--precision` are accepted (so that `gpu.sh`
passes every script the same flags) and change nothing.

    python benchmarks/eval_scale.py --rows 5000          # quick check
    python benchmarks/eval_scale.py                      # full size
    python benchmarks/eval_scale.py --smoke              # tiny: does it run?
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the CPU is shared; numpy's work here is single-threaded anyway

import argparse
import csv
import io
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from c2srt.constants import NEGATIVE, OPEN_IMAGES_TOPK, POSITIVE
from c2srt.environment import environment as _environment
from c2srt.io import atomic_write_text
from c2srt.protocol import OPEN_IMAGES_NUM_SEEN, OPEN_IMAGES_NUM_UNSEEN, StreamingEvaluator, format_table

OPEN_IMAGES_TEST_ROWS = 125_436
DEFAULT_CHUNK = 1024  # rows per update (one model batch or a few)
LABELS_PER_IMAGE = (5, 15)  # verified labels per image (inclusive range)
UNSEEN_LABEL_FRACTION = 0.1  # share of an image's verified labels drawn among the unseen columns
POSITIVE_FRACTION = 0.6  # share of verified labels that are positive
POSITIVE_BONUS = 1.5  # added to the N(0, 1) score of a positive entry
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def make_chunk(rng: np.random.Generator, n: int, n_cols: int, n_unseen: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """One chunk: scores [n, C] float32, labels [n, C] int8 with a few +-1 per row."""
    n_seen = n_cols - n_unseen
    scores = rng.standard_normal((n, n_cols), dtype=np.float32)
    labels = np.zeros((n, n_cols), dtype=np.int8)
    per_row = rng.integers(lo, hi + 1, size=n)
    total = int(per_row.sum())
    rows = np.repeat(np.arange(n), per_row)
    unseen = rng.random(total) < UNSEEN_LABEL_FRACTION
    seen_col = (n_seen * rng.random(total) ** 2).astype(np.int64)  # skewed popularity: low indices frequent
    unseen_col = n_seen + rng.integers(0, n_unseen, size=total)
    cols = np.where(unseen, unseen_col, seen_col)
    vals = np.where(rng.random(total) < POSITIVE_FRACTION, POSITIVE, NEGATIVE).astype(np.int8)
    labels[rows, cols] = vals  # a repeated (row, col) keeps one value
    scores += POSITIVE_BONUS * (labels == POSITIVE)
    return scores, labels


def environment() -> dict[str, str]:
    """The result files' record (c2srt.environment): numpy's and torch's versions, read without importing torch."""
    return _environment({"numpy": "numpy", "torch": "torch"})  # type: ignore[return-value]


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir()) / (1 << 20)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=OPEN_IMAGES_TEST_ROWS, help="images")
    p.add_argument("--cols", type=int, default=OPEN_IMAGES_NUM_SEEN + OPEN_IMAGES_NUM_UNSEEN, help="labels (seen + unseen)")
    p.add_argument("--unseen", type=int, default=OPEN_IMAGES_NUM_UNSEEN, help="unseen labels (the last columns)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="rows per update")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels-min", type=int, default=LABELS_PER_IMAGE[0], help="fewest verified labels per image")
    p.add_argument("--labels-max", type=int, default=LABELS_PER_IMAGE[1], help="most verified labels per image")
    p.add_argument("--no-row-pooled", action="store_true", help="skip the row-pooled compatibility mAP")
    p.add_argument("--device", default="cpu", help="accepted for gpu.sh; the evaluator runs on the CPU")
    p.add_argument("--precision", default="fp32", help="accepted for gpu.sh; scores are float32")
    p.add_argument("--smoke", action="store_true", help="2,000 rows, to check that the script runs")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.smoke:
        args.rows = min(args.rows, 2000)
    if not 0 < args.unseen < args.cols or args.rows < 1 or args.chunk < 1 or not 1 <= args.labels_min <= args.labels_max <= args.cols:
        p.error("need 0 < --unseen < --cols, --rows >= 1, --chunk >= 1 and 1 <= --labels-min <= --labels-max <= --cols")

    env = environment()
    rng = np.random.default_rng(args.seed)
    unseen_mask = np.arange(args.cols) >= args.cols - args.unseen
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    t_gen = 0.0
    ev = StreamingEvaluator("open_images", ~unseen_mask, unseen_mask, topk=OPEN_IMAGES_TOPK, row_pooled=not args.no_row_pooled)
    for a in range(0, args.rows, args.chunk):
        tg = time.perf_counter()
        scores, labels = make_chunk(rng, min(args.chunk, args.rows - a), args.cols, args.unseen, args.labels_min, args.labels_max)
        t_gen += time.perf_counter() - tg
        ev.update(scores, labels)
        del scores, labels
    t1 = time.perf_counter()
    spill_mb = dir_size_mb(ev.workdir)
    annotated = ev.n_annotated
    results = ev.compute()
    t2 = time.perf_counter()

    run = {
        "rows": args.rows,
        "cols": args.cols,
        "unseen": args.unseen,
        "chunk": args.chunk,
        "seed": args.seed,
        "annotated_entries": annotated,
        "dense_scores_gb": round(args.rows * args.cols * 4 / 1e9, 2),
        "spill_mb": round(spill_mb, 1),
        "generate_s": round(t_gen, 2),
        "update_s": round(t1 - t0 - t_gen, 2),
        "compute_s": round(t2 - t1, 2),
        "wall_s": round(t2 - t0, 2),
        "peak_rss_mb_at_start": round(rss_start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(format_table(results, digits=2))
    print()
    width = max(len(k) for k in [*run, *env])
    for k, v in [*run.items(), *env.items()]:
        print(f"{k.ljust(width)}  {v}")

    tag = f"eval_scale_{args.rows}x{args.cols}_{env['git_sha']}_np{env['numpy']}_torch{env['torch']}".replace("+", "-")
    payload = {"run": run, "environment": env, "results": results}
    atomic_write_text(args.out_dir / f"{tag}.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "value"])
    for section in (run, env, results):
        for k, v in section.items():
            w.writerow([k, v])
    atomic_write_text(args.out_dir / f"{tag}.csv", buf.getvalue())
    print(f"\nwrote {args.out_dir / tag}.json and .csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
