"""Small name -> factory registries (timm style, but registering a name twice is an error)."""

from __future__ import annotations

import copy
import enum
import fnmatch
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

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str) -> T:
        """Return the entry (a deep copy for plain data, so callers cannot corrupt the registry)."""
        if name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._entries)) or '(none)'}"
            )
        obj = self._entries[name]
        return copy.deepcopy(obj) if isinstance(obj, (dict, list)) else obj

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.list()})"


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
