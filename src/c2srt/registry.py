"""Small name -> factory registries (timm style, but registering a name twice is an error).

The library's own registries are declared here, below every layer that reads them, each with its
*home*: the package whose import registers the built-in entries (timm's `models/__init__.py`
imports every model file). A registry imports its home on the first lookup, so the config can
check a head name without importing the heads, and an application adds an entry by name
(`add_lazy`) without the library ever importing it.
"""

from __future__ import annotations

import copy
import enum
import fnmatch
import importlib
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


class Registry(Generic[T]):
    """A dict of named entries filled by a decorator.

    Example:
        >>> HEADS = Registry("head")
        >>> @HEADS.register("mkt")
        ... def build_mkt(**kw): ...
    """

    def __init__(self, kind: str, *, home: str | None = None) -> None:
        self.kind = kind
        self.home = home  # package whose import registers the built-in entries (imported on first lookup)
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> module that registers it when imported
        self._home_loaded = home is None

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._lazy.pop(name, None)  # the module named by `add_lazy` fulfils its entry
            self._entries[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def add_lazy(self, name: str, module: str) -> None:
        """Declare that importing `module` registers `name`; it is imported when `name` is first looked up.

        For entries of code built on the library (an application's dataset): the registry's home
        names the module without importing it.
        """
        if name in self._entries or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._lazy[name] = module

    def _load(self, name: str | None = None) -> None:
        """Import the home package once, and the module of a lazy entry when it is asked for."""
        if not self._home_loaded:
            self._home_loaded = True  # before the import: the home's own modules register while it runs
            try:
                importlib.import_module(self.home)  # type: ignore[arg-type]
            except BaseException:
                self._home_loaded = False
                raise
        module = self._lazy.get(name) if name is not None else None
        if module is not None:
            importlib.import_module(module)
            if name in self._lazy:
                raise ValueError(f"{self.kind} {name!r}: importing {module} did not register it")

    def get(self, name: str) -> T:
        """Return the entry (a deep copy for plain data, so callers cannot corrupt the registry)."""
        self._load(name)
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.list()) or '(none)'}")
        obj = self._entries[name]
        return copy.deepcopy(obj) if isinstance(obj, (dict, list)) else obj

    def list(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(n for n in {*self._entries, *self._lazy} if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries or name in self._lazy

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.list()})"


# The library's registries: heads (`heads/*`) and datasets (`data/*`, and the mini-world's by name).
HEADS: Registry[Callable[..., Any]] = Registry("head", home="c2srt.heads")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset", home="c2srt.data")


def drop_none(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Overrides whose value is None mean "not given" and are dropped."""
    return {k: v for k, v in kwargs.items() if v is not None}


def parse_enum(kind: type[E], value: Any, name: str) -> E:
    """The member of a closed set (`Enum`) that `value` names; ValueError naming `name` and listing the valid values."""
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{name}={value!r} is not valid; choose one of {valid}") from None
