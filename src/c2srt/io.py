"""Atomic file writes and friendly JSON reading.

Why: a run killed half-way (pre-emption, Ctrl-C, a full disk) must never leave a truncated
config, report or checkpoint that a later run silently reads. Everything c2srt writes goes to a
temporary file in the destination folder first and is then renamed over the target with
`os.replace`, which is atomic on POSIX and Windows when both paths are on one file system.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_TMP_SUFFIX = ".tmp"
_DEFAULT_FILE_MODE = 0o666  # before the umask, as open() would create the file
_JSON_INDENT = 2


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """Keep the mode of the file being replaced; a new file gets the usual 0o666 & ~umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return _DEFAULT_FILE_MODE & ~_umask()


def _temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path` that keeps its suffix (libraries infer formats from it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{_TMP_SUFFIX}{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk before the rename makes it visible (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (e.g. certain network mounts) refuse fsync
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`.

    For libraries that write by file name (safetensors, matplotlib). If the block raises, the
    temporary file is deleted and an existing `path` is left untouched.

    Args:
        path: the final destination. Missing parent folders are created.

    Yields:
        A path in the same folder (same file system, so the rename is atomic) with the same suffix.

    Example:
        >>> with atomic_path("model.safetensors") as tmp:
        ...     save_file(tensors, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _final_mode(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: nothing was written to the temporary file {tmp}")
        os.chmod(tmp, mode)
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a no-op after a successful rename


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file + rename). Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (temporary file + rename). Returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


# The name docs/ARCHITECTURE.md uses for "the" atomic writer.
atomic_write = atomic_write_bytes


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays, torch tensors and paths become plain JSON values."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = _JSON_INDENT) -> Path:
    """Write `obj` as UTF-8 JSON (with a final newline) atomically. Returns the path.

    numpy / torch values are converted with `.tolist()`, paths with `os.fspath`.

    Raises:
        TypeError: when `obj` holds something JSON cannot represent; nothing is written then.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ValueError: the file is not valid UTF-8 JSON; the message names the file, line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from e
