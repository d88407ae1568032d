"""Time category-graph builds (embedding source and the local LLM) and project them to larger vocabularies.

Usage:
    python benchmarks/graph_build.py [--labels ../shared/data/coco8/classes.txt] [--threads 2]
        [--cache DIR] [--project 1006 7586] [--repeats 1] [--sources embedding llm contexts] [--smoke]
    python benchmarks/graph_build.py --labels imagenet --sources contexts --show dog snowman   # 1,000 ImageNet classes

Sources: `embedding` (MiniLM), `llm` (the local LLM's version-1 mode "pmi": it judges the 30
nearest labels by embedding), `contexts` (the local LLM's default mode: every label against every
label, mutual top-3). `--labels imagenet` reads the 1,000 ImageNet class names from torchvision's
weights metadata (offline). Besides the time, the table gives neighbours per label (min / mean /
max and how many labels have 0, 1, 2, ... neighbours) and the range of edge strengths; `--show`
prints the neighbours of some labels.

The local language model and MiniLM run on the CPU (`c2srt.graph` has no device option): `--device`
and `--precision` are accepted, so that `gpu.sh` passes every script the same flags, and recorded.

Prints a table (labels, candidates, seconds, seconds per label, projected seconds) with the
machine load, and writes it as CSV under benchmarks/results/ (git SHA and versions in the name).
The local LLM's one-off GGUF conversion is done (and timed) before the timed builds.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from c2srt.graph import build_graph
from c2srt.graph.encoders import minilm_encoder
from c2srt.graph.contexts import ContextScorer
from c2srt.graph.llm import LocalLMScorer
from c2srt.vocabulary import read_label_file

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository (or beside the folder of git worktrees)
DEFAULT_LABELS = next(
    (c for c in (REPO.parent / "shared" / "data" / "coco8" / "classes.txt", REPO.parents[1] / "shared" / "data" / "coco8" / "classes.txt") if c.is_file()),
    None,
)
FALLBACK_LABELS = 80  # synthetic names when no label file is at hand (timing only)


def _sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="label file (default: COCO8's 80 classes), or 'imagenet'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=30)
    ap.add_argument("--cache", type=Path, default=None, help="cache root (default $C2SRT_CACHE or ~/.cache/c2srt)")
    ap.add_argument("--project", type=int, nargs="*", default=[1006, 7586], help="vocabulary sizes to project to")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sources", nargs="+", choices=("embedding", "llm", "contexts"), default=["embedding", "llm", "contexts"])
    ap.add_argument("--show", nargs="*", default=[], help="print the neighbours of these labels")
    ap.add_argument("--device", default="cpu", help="accepted for gpu.sh; the graph sources run on the CPU")
    ap.add_argument("--precision", default="fp32", help="accepted for gpu.sh")
    ap.add_argument("--smoke", action="store_true", help="the embedding source on 10 labels, to check that the script runs")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    if args.smoke:
        args.sources = ["embedding"]
    torch.set_num_threads(args.threads)
    if str(args.labels) == "imagenet":
        from torchvision.models import ResNet50_Weights

        labels = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])  # 1,000 names
    elif args.labels is not None:
        labels = read_label_file(args.labels)
    else:
        print(f"no COCO8 classes.txt beside the repository: timing {FALLBACK_LABELS} synthetic names (pass --labels)")
        labels = [f"concept {i:02d}" for i in range(FALLBACK_LABELS)]
    if args.smoke:
        labels = labels[:10]
    enc = minilm_encoder()
    t0 = time.perf_counter()
    enc(labels)  # loads MiniLM
    t_minilm = time.perf_counter() - t0
    t0 = time.perf_counter()
    scorer = LocalLMScorer(cache_dir=args.cache) if "llm" in args.sources else None
    contexts = ContextScorer(cache_dir=args.cache) if "contexts" in args.sources else None  # no cache file: every label computed
    t_load = time.perf_counter() - t0

    rows = []
    for source in args.sources:
        times = []
        for _ in range(args.repeats):
            if source == "llm":
                scorer._neutral.clear()  # time the baseline log-probs too
            if source == "contexts":
                contexts = ContextScorer(contexts.lm)  # fresh states and baseline, the model kept
            t0 = time.perf_counter()
            if source == "contexts":
                g = build_graph(labels, source="llm", scorer=contexts)
            else:
                g = build_graph(labels, source=source, encoder=enc, candidates=args.candidates, scorer=scorer if source == "llm" else None)
            times.append(time.perf_counter() - t0)
        sec = min(times)
        counts = [len(g.neighbors(n)) for n in labels]
        weights = [w for _, _, w in g.edges()]
        row = {
            "source": {"embedding": "embedding", "llm": "llm-local pmi (v1)", "contexts": "llm-local contexts"}[source],
            "labels": len(labels),
            "candidates": "all" if source == "contexts" else args.candidates,
            "seconds": round(sec, 2),
            "ms_per_label": round(1000 * sec / len(labels), 1),
            "neighbours_mean": round(sum(counts) / len(counts), 2),
            "neighbours_min_max": f"{min(counts)}-{max(counts)}",
            "labels_by_neighbours": " ".join(f"{k}:{counts.count(k)}" for k in range(max(counts) + 1)),
            "strength_range": f"{min(weights):.2f}-{max(weights):.2f}" if weights else "",
        }
        for name in args.show:
            if name in g:
                print(f"{row['source']}: {name} <- " + ", ".join(f"{n} ({w:.2f})" for n, w in g.neighbors(name)))
        for k in args.project:
            # Scoring is linear in labels x candidates; the similarity matrix (K^2) is negligible here.
            row[f"projected_s_{k}"] = round(sec * k / len(labels), 1)
        rows.append(row)

    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (CPU; --device {args.device} not used)")
    print(f"one-off: MiniLM load + encode {t_minilm:.1f} s; local LLM load {t_load:.1f} s (first use converts the GGUF: about 50 s more)")
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for r in rows:
        print("  ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths)))
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"graph_build_{len(labels)}labels_{_sha()}_torch{torch.__version__.split('+')[0]}_t{args.threads}.csv"
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys + ["load_avg_1min"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "load_avg_1min": round(load[0], 2)})
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
