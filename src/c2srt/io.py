"""Atomic file writes, friendly JSON reading and the cache root.

Why: a run killed half-way (pre-emption, Ctrl-C, a full disk) must never leave a truncated
config, report or checkpoint that a later run silently reads. Everything c2srt writes goes to a
temporary file in the destination folder first and is then renamed over the target with
`os.replace`, which is atomic on POSIX and Windows when both paths are on one file system.
A write that fails (disk full, permission) raises an `OSError` naming the destination, and leaves
neither the temporary file nor a changed destination behind.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CACHE_ENV = "C2SRT_CACHE"  # environment variable that moves the cache root
_DEFAULT_CACHE = Path("~") / ".cache" / "c2srt"
_TMP_SUFFIX = ".tmp"
# fsync errors that only mean "this file system does not do fsync"; any other (ENOSPC, EIO,
# EDQUOT: data that never reached the disk) is raised, since the rename would publish a bad file.
_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EROFS})
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


def cache_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The folder for c2srt's caches: `override`, else $C2SRT_CACHE, else ~/.cache/c2srt.

    Not created here: callers create what they write.
    """
    if override is not None:
        return Path(override).expanduser()
    return Path(os.environ.get(CACHE_ENV) or _DEFAULT_CACHE).expanduser()


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk before the rename makes it visible.

    Raises:
        OSError: the data could not be written (disk full, I/O error); "fsync not supported" is not an error.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _naming(e: OSError, path: Path) -> OSError:
    """The same error (same errno, so the same subclass) naming `path`, the file the caller knows,
    when it names no file or names our temporary file."""
    if e.errno is None:
        return e
    if e.filename is not None:
        named = Path(os.fsdecode(e.filename))
        ours = named.parent == path.parent and named.name.startswith(f".{path.stem}.") and _TMP_SUFFIX in named.name
        if not ours:
            return e
    return OSError(e.errno, e.strerror or os.strerror(e.errno), str(path))


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
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _final_mode(path)
        tmp = _temp_name(path)
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: nothing was written to the temporary file {tmp}")
        os.chmod(tmp, mode)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as e:
        err = _naming(e, path)
        if err is e:
            raise
        raise err from e
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)  # a no-op after a successful rename


def save_figure(fig: Any, path: str | os.PathLike[str], *, format: str | None = None, **savefig: Any) -> Path:
    """Write a matplotlib figure atomically (through `atomic_path`); the one way c2srt saves a picture.

    Args:
        fig: a `matplotlib.figure.Figure` (anything with `savefig`).
        path: the file to write; missing folders are created.
        format: the image format (default: the suffix of `path`, else "png").
        **savefig: passed to `fig.savefig` (e.g. `dpi`, `bbox_inches`).

    Returns:
        `path`.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=format or path.suffix.lstrip(".") or "png", **savefig)
    return path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path` for writing; on success rename it over `path`.

    For writers that take a file object (`torch.save`, `csv.writer`). If the block raises, nothing
    changes at `path`.

    Args:
        path: the final destination.
        mode: "wb" or "w".
        encoding: for text mode (default UTF-8).

    Example:
        >>> with atomic_open("last.ckpt") as fh:
        ...     torch.save(checkpoint, fh)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes a new file: mode must be 'wb' or 'w', got {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as fh:
        yield fh
        fh.flush()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file + rename). Returns the path."""
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (temporary file + rename). Returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


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
