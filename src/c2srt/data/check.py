"""The image check: decode every image of a dataset once, before training, and remember the verdicts.

Why: a dataset of 100k web images holds a few broken files (empty downloads, truncated JPEGs, HTML
error pages saved as .jpg, decompression bombs). Found mid-epoch, they cost the hours already spent;
found one at a time, they cost a run per file. So every image is decoded once, in parallel worker
processes with a progress bar, and every problem is reported at once, before training. Verdicts
are cached per file, keyed by (path, size, modification time), so later runs only stat the files:
`<cache root>/image-check/<folder hash>.json`, one file per image folder, written atomically.
A verdict also depends on the decoder, so a cache written by another Pillow version is ignored.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..images import image_problem
from ..io import cache_root, read_json, write_json

_logger = logging.getLogger(__name__)

CACHE_DIRNAME = "image-check"  # under the cache root
CACHE_FORMAT = "c2srt-image-check"
CACHE_VERSION = 1  # bump when a verdict would change for the same file
MIN_FILES_FOR_WORKERS = 64  # fewer files are decoded in this process (starting workers costs more)
CHUNK_SIZE = 16  # files per task sent to a worker


def default_workers() -> int:
    """Worker processes for the check: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux, as torch's DataLoader does: "spawn" and "forkserver" re-run the caller's main
    script in every worker (slow, and fatal for a script without an `if __name__ == "__main__"`
    guard); the workers only decode with Pillow, which needs no lock another thread may hold."""
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _pillow_version() -> str:
    import PIL

    return PIL.__version__


class VerdictCache:
    """Verdicts of one image folder: relative path -> (size, mtime_ns, reason or None).

    Args:
        folder: the folder holding the images (verdicts are stored relative to it).
        cache_dir: where the cache files live (default `<cache root>/image-check`).
    """

    def __init__(self, folder: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.folder = os.path.abspath(folder)
        key = hashlib.sha256(self.folder.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.path = Path(cache_dir) if cache_dir is not None else cache_root() / CACHE_DIRNAME
        self.path = self.path / f"{key}.json"
        self.entries: dict[str, list[Any]] = {}
        self.changed = False
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            data = read_json(self.path)
        except (ValueError, OSError) as e:  # a damaged cache is rebuilt, never fatal
            _logger.warning("image-check cache %s is unreadable (%s); checking again", self.path, e)
            return
        ok = (
            isinstance(data, dict)
            and data.get("format") == CACHE_FORMAT
            and data.get("version") == CACHE_VERSION
            and data.get("pillow") == _pillow_version()
            and data.get("folder") == self.folder
            and isinstance(data.get("files"), dict)
        )
        if ok:
            self.entries = data["files"]
        else:
            _logger.info("image-check cache %s is from another version; checking again", self.path)

    def _key(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), self.folder)

    def get(self, path: str, stat: os.stat_result) -> tuple[bool, str | None]:
        """(known, reason): whether a verdict for this very file (same size and mtime) is cached."""
        entry = self.entries.get(self._key(path))
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            return True, entry[2]
        return False, None

    def put(self, path: str, stat: os.stat_result, reason: str | None) -> None:
        self.entries[self._key(path)] = [stat.st_size, stat.st_mtime_ns, reason]
        self.changed = True

    def save(self) -> None:
        """Write the cache atomically (when something changed); a failure is logged, not raised."""
        if not self.changed:
            return
        data = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "pillow": _pillow_version(),
            "folder": self.folder,
            "files": self.entries,
        }
        try:
            write_json(self.path, data, indent=None)
            self.changed = False
        except OSError as e:  # a cache we cannot write only costs time next run
            _logger.warning("could not write the image-check cache %s: %s", self.path, e)


def _common_folder(paths: Sequence[str]) -> str:
    """The deepest folder holding all the files (the cache is kept per such folder)."""
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    try:
        return os.path.commonpath(list(folders))
    except ValueError:  # folders on different drives (Windows)
        return min(folders)


def check_image_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[str | None]:
    """Decode every file once and say why each one cannot be read (None: it can).

    Args:
        paths: image files.
        workers: worker processes (default: the CPUs available; 1 decodes in this process).
        progress: show a progress bar (tqdm, on stderr, only on a terminal).
        cache: read and write cached verdicts (keyed by path, size and modification time).
        cache_dir: folder of the cache files (default `<cache root>/image-check`).

    Returns:
        One entry per path, in order: None, or the reason (e.g. "no such file",
        "not a readable image (empty file)", "too large to decode safely (...)").
    """
    names = [os.fspath(p) for p in paths]
    reasons: list[str | None] = [None] * len(names)
    if not names:
        return reasons
    store = VerdictCache(_common_folder(names), cache_dir) if cache else None
    todo: list[int] = []
    stats: dict[int, os.stat_result] = {}
    for i, name in enumerate(names):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            reasons[i] = "no such file"
            continue
        except OSError as e:
            reasons[i] = f"cannot stat the file ({e.strerror})"
            continue
        stats[i] = st
        known, reason = store.get(name, st) if store is not None else (False, None)
        if known:
            reasons[i] = reason
        else:
            todo.append(i)
    t0 = time.perf_counter()
    n_workers = min(workers or default_workers(), max(1, len(todo) // CHUNK_SIZE))
    if len(todo) < MIN_FILES_FOR_WORKERS:
        n_workers = 1
    if todo:
        _logger.info(
            "checking %d image(s) (%d verdict(s) cached) with %d worker(s)", len(todo), len(names) - len(todo), n_workers
        )
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="checking images", unit="img", disable=None)
    try:
        if n_workers == 1:
            results = map(image_problem, (names[i] for i in todo))
            pool = None
        else:
            pool = concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=_pool_context())
            results = pool.map(image_problem, [names[i] for i in todo], chunksize=CHUNK_SIZE)
        try:
            for i, reason in zip(todo, results):
                reasons[i] = reason
                if store is not None:
                    store.put(names[i], stats[i], reason)
                if bar is not None:
                    bar.update(1)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
        if store is not None:
            store.save()  # keep what was checked, even when interrupted
    if todo:
        bad = sum(reasons[i] is not None for i in todo)
        _logger.info("checked %d image(s) in %.1f s: %d unreadable", len(todo), time.perf_counter() - t0, bad)
    return reasons
