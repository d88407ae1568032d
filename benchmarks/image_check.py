"""Images/s of the pre-training image check (`c2srt data check`, `data.check_images`), cold and cached.

Copies the real photos of ../shared/data (COCO8 and the four photos: 640 px to 1,080 px JPEGs) into a
temporary folder until there are `--files` of them, then times `check_image_files` three ways:
decoding every file in this process (1 worker), decoding in `--workers` worker processes, and a second
run over the same files that finds every verdict in its cache (a `stat` per file). The machine load
(1-minute load average) is recorded before and after: these machines are shared.

    python benchmarks/image_check.py                  # 400 files, all CPUs
    python benchmarks/image_check.py --files 2000 --workers 8
    python benchmarks/image_check.py --smoke          # 40 files: does it run?
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import print_rows, write_rows  # noqa: E402
from eval_scale import RESULTS_DIR, environment  # noqa: E402

from c2srt.data.check import check_image_files, default_workers  # noqa: E402
from c2srt.images import has_image_suffix  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILES = 400


def sources() -> list[Path]:
    for root in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if root.is_dir():
            return sorted(p for p in root.rglob("*") if p.is_file() and has_image_suffix(p.name))
    raise SystemExit("../shared/data (COCO8 and the photos) is not beside the repository")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=DEFAULT_FILES, help="image files to check")
    ap.add_argument("--workers", type=int, default=default_workers(), help="worker processes of the parallel run")
    ap.add_argument("--device", default="cpu", help="accepted for gpu.sh; the check decodes on the CPU")
    ap.add_argument("--precision", default="fp32", help="accepted for gpu.sh")
    ap.add_argument("--smoke", action="store_true", help="40 files, to check that the script runs")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    if args.smoke:
        args.files = min(args.files, 40)
    src = sources()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="c2srt-image-check-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = []
        for i in range(args.files):
            p = folder / f"{i:06d}{src[i % len(src)].suffix}"
            shutil.copy(src[i % len(src)], p)
            paths.append(p)
        mpx = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e3
        for label, workers, cache in (("decode, 1 worker", 1, False), (f"decode, {args.workers} workers", args.workers, False)):
            t0 = time.perf_counter()
            bad = sum(r is not None for r in check_image_files(paths, workers=workers, progress=False, cache=cache))
            dt = time.perf_counter() - t0
            rows.append({"run": label, "files": len(paths), "s": f"{dt:.2f}", "img/s": f"{len(paths) / dt:.0f}", "bad": bad})
        cache_dir = Path(tmp) / "cache"
        check_image_files(paths, workers=args.workers, progress=False, cache_dir=cache_dir)  # fills the cache
        t0 = time.perf_counter()
        check_image_files(paths, workers=args.workers, progress=False, cache_dir=cache_dir)
        dt = time.perf_counter() - t0
        rows.append({"run": "cached verdicts", "files": len(paths), "s": f"{dt:.2f}", "img/s": f"{len(paths) / dt:.0f}", "bad": 0})
    print(f"{len(src)} source photos, mean file size {mpx:.0f} kB; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print_rows(rows)
    env = environment()
    write_rows(args.out_dir, f"image_check_{args.files}_{env['git_sha']}", rows, args=vars(args), environment=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
