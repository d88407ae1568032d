"""What every torch benchmark here shares: a CUDA-synchronised clock, a printed table, CSV + JSON files.

The environment (git SHA, versions) comes from `eval_scale`, which imports no torch (it measures
memory), the atomic writer from `c2srt.io`; this module adds the torch-side pieces.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from c2srt.io import atomic_write_text


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_device_args(p: argparse.ArgumentParser) -> None:
    """`--device` (default: cuda when present) and `--precision` (autocast dtype), the same in every script."""
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="autocast dtype (fp32: none)")


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: no CUDA device here")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to the `--precision` dtype, or nothing for fp32."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of `fn()`, synchronising CUDA before each reading of the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def run_environment(device: torch.device, load_before: float | None = None) -> dict[str, str]:
    """What a result file records beside its figures: `eval_scale.environment()` (git SHA,
    versions), the device, torch's threads and the 1-minute machine load, before the run (now,
    when `load_before` is not given) and, when it is, after."""
    # the benchmarks folder is on sys.path in every script
    from eval_scale import environment

    env = {**environment(), "device": device_name(device), "threads": str(torch.get_num_threads())}
    now = f"{os.getloadavg()[0]:.2f}"
    if load_before is None:
        return {**env, "load_1min_before": now}
    return {**env, "load_1min_before": f"{load_before:.2f}", "load_1min_after": now}


def print_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Print rows as an aligned table; returns the columns (union of the rows' keys, in order)."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print(" | ".join(c.ljust(widths[c]) for c in cols))
    print("-|-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
    return cols


def write_rows(out_dir: Path, tag: str, rows: list[dict[str, Any]], **payload: Any) -> None:
    """`<tag>.json` (rows plus `payload`, e.g. args and environment) and `<tag>.csv` (rows), atomically."""
    tag = tag.replace("+", "-")
    cols = list(dict.fromkeys(c for r in rows for c in r))
    atomic_write_text(out_dir / f"{tag}.json", json.dumps({**payload, "rows": rows}, indent=2, default=str) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out_dir / f"{tag}.csv", buf.getvalue())
    print(f"wrote {out_dir / tag}.json and .csv")
