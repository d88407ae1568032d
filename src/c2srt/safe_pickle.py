"""A restricted unpickler for the few pickle files published with the benchmarks.

Why: MKT / BiAM ship image-name lists (`img_names.pkl`) and Open Images' `unseen_labels.pkl` as
pickles, and `pickle.load` runs arbitrary code named by the file. This loader resolves only the
globals that plain data needs (builtin containers and scalars, numpy arrays of plain dtypes), so
a file that names anything else (`os.system`, `subprocess.Popen`, `builtins.eval`, ...) is
refused before any object is built from it.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Callable

# numpy dtype kinds we accept: bool, signed / unsigned int, float, complex, str, bytes, and object
# (whose elements come out of the same restricted stream, and are checked again afterwards).
_PLAIN_DTYPE_KINDS = frozenset("biufcUSO")
_SAFE_BUILTINS = frozenset(
    {"set", "frozenset", "complex", "bytearray", "list", "dict", "tuple", "str", "bytes", "int", "float", "bool"}
)
_LATIN1 = frozenset({"latin1", "latin-1", "iso-8859-1"})
_MAX_DEPTH = 10_000  # nesting limit of the after-load check


class UnsafePickleError(ValueError):
    """A pickle file names a global outside the allowed set, or holds a disallowed object."""


def _check_dtype(dtype: Any, path: str) -> None:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.kind not in _PLAIN_DTYPE_KINDS or dtype.fields is not None:
        raise UnsafePickleError(
            f"{path}: numpy dtype {dtype!r} is not allowed (plain bool/int/float/complex/str/bytes/object only)"
        )


def _numpy_globals(path: str) -> dict[tuple[str, str], Callable[..., Any]]:
    """Wrapped numpy constructors keyed by every (module, name) numpy has pickled them under."""
    import numpy as np

    try:  # numpy >= 2
        from numpy._core import multiarray as _ma
        from numpy._core import numeric as _num
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
        from numpy.core import numeric as _num  # type: ignore[no-redef]

    def dtype(obj: Any, align: bool = False, copy: bool = False) -> Any:
        d = np.dtype(obj, align, copy)
        _check_dtype(d, path)
        return d

    def reconstruct(cls: Any, shape: Any, typecode: Any) -> Any:
        if cls is not np.ndarray:
            raise UnsafePickleError(f"{path}: array subclass {cls!r} is not allowed (plain numpy.ndarray only)")
        return _ma._reconstruct(cls, shape, typecode)

    def scalar(d: Any, *args: Any) -> Any:
        _check_dtype(d, path)
        if d.kind == "O":
            raise UnsafePickleError(f"{path}: numpy object scalars are not allowed")
        return _ma.scalar(d, *args)

    def frombuffer(buf: Any, d: Any, shape: Any, order: Any, *args: Any) -> Any:
        _check_dtype(d, path)
        return _num._frombuffer(buf, d, shape, order, *args)

    table: dict[tuple[str, str], Callable[..., Any]] = {("numpy", "dtype"): dtype, ("numpy", "ndarray"): np.ndarray}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = reconstruct
        table[(mod, "scalar")] = scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = frombuffer
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    """`find_class` resolves only an allow-list; everything else raises UnsafePickleError."""

    def __init__(self, file: io.BufferedIOBase, path: str) -> None:
        # latin1 lets Python 2 pickles (str and numpy buffers) load as the arrays they were
        super().__init__(file, encoding="latin1")
        self._path = path
        self._numpy: dict[tuple[str, str], Callable[..., Any]] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:  # __builtin__: protocols 0-2
            import builtins

            return getattr(builtins, name)
        if module == "_codecs" and name == "encode":  # how protocol <= 2 stores bytes
            return self._latin1_encode
        if module.startswith("numpy"):
            if self._numpy is None:
                self._numpy = _numpy_globals(self._path)
            if (module, name) in self._numpy:
                return self._numpy[(module, name)]
        raise UnsafePickleError(
            f"{self._path}: refusing to load the global {module}.{name} (a pickle may only hold builtin "
            "containers and scalars and numpy arrays of plain dtypes; this file could run code)"
        )

    def _latin1_encode(self, obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(obj, str) or encoding.lower() not in _LATIN1:
            raise UnsafePickleError(f"{self._path}: unexpected _codecs.encode({type(obj).__name__}, {encoding!r})")
        return obj.encode(encoding, errors)


def _check_tree(obj: Any, path: str) -> None:
    """Defence in depth: walk the loaded object and accept plain data only."""
    import numpy as np

    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise UnsafePickleError(f"{path}: nesting deeper than {_MAX_DEPTH}")
        if item is None or isinstance(item, (bool, int, float, complex, str, bytes, bytearray)):
            continue
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((x, depth + 1) for x in item)
        elif isinstance(item, dict):
            stack.extend((x, depth + 1) for kv in item.items() for x in kv)
        elif type(item) is np.ndarray:
            _check_dtype(item.dtype, path)
            if item.dtype.kind == "O":
                stack.extend((x, depth + 1) for x in item.ravel().tolist())
        elif isinstance(item, np.generic):
            _check_dtype(item.dtype, path)
        else:
            raise UnsafePickleError(f"{path}: object of type {type(item).__name__} is not allowed")


def safe_load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pickle file that may only contain plain data.

    Allowed: None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set,
    frozenset, and numpy arrays / scalars of bool, int, float, complex, str, bytes or object dtype
    (object elements must themselves be allowed values).

    Args:
        path: the pickle file.

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: (a ValueError) the file names a forbidden global, such as `os.system`;
            the message names the file and the global. Nothing from the file is executed.
        ValueError: the file is not a readable pickle (truncated, corrupt); the message names it.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pickle file not found: {p}")
    with open(p, "rb") as fh:
        try:
            obj = _RestrictedUnpickler(fh, str(p)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
            raise ValueError(f"{p}: not a readable pickle of plain data ({type(e).__name__}: {e})") from e
    _check_tree(obj, str(p))
    return obj
