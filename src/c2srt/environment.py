"""What a result depends on besides its config: the code's revision, library versions, the machine.

One record for every run (`env.json` beside a training run) and every benchmark result file.
A version is the imported module's own `__version__` (torch's names its build, e.g. `+cu130`), or
for a module not imported, the installed package's metadata: recording imports nothing, so a
benchmark measuring memory stays free of torch unless it asks for the device.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Mapping

from .version import __version__

#: record key (the module's import name) -> distribution whose version is recorded
DEFAULT_PACKAGES: dict[str, str] = {"torch": "torch", "numpy": "numpy"}
GIT_TIMEOUT_S = 5


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def git_revision() -> str:
    """The short commit of the code that runs, `-dirty` when tracked files differ from it ("unknown": no git)."""
    sha = _git("rev-parse", "--short", "HEAD")
    if not sha:
        return "unknown"
    return sha + ("-dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def package_version(distribution: str, module: str | None = None) -> str:
    """The version of `module` when it is imported, else the installed distribution's ("none": not installed)."""
    version = getattr(sys.modules.get(module or ""), "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


def environment(packages: Mapping[str, str] = DEFAULT_PACKAGES, *, device: bool = False) -> dict[str, str | None]:
    """The record: c2srt's version and revision, Python, the `packages` (key -> distribution), the machine.

    Args:
        packages: record key (the import name) -> distribution name, e.g. `{"open_clip": "open_clip_torch"}`.
        device: also the CUDA version and the device (imports torch): the GPU's name, else the CPU's.
    """
    record: dict[str, str | None] = {
        "c2srt": __version__,
        "git_sha": git_revision(),
        "python": platform.python_version(),
        **{key: package_version(dist, key) for key, dist in packages.items()},
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "cpu_affinity": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if device:
        import torch

        record["cuda"] = torch.version.cuda
        record["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return record
