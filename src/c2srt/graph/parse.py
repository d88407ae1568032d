"""Defensive parsing of language-model answers into (label, strength) pairs.

Never trust the model: every name is matched against the vocabulary (exact, then case/space
folded, then a fuzzy `difflib` match with a cutoff, preferring the candidates shown in the prompt),
and unknown names, duplicates, self-loops, out-of-range strengths and malformed text are dropped and
counted in a `ParseReport`, which ends up in the graph's `report`. Nothing here raises on bad model
output.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .graph import DROP_REASONS

FUZZY_CUTOFF = 0.85  # difflib ratio a near-miss name needs to be accepted
MAX_EXAMPLES = 5  # dropped items kept per reason in the report, for debugging prompts
NAME_KEYS = ("name", "label", "category", "object", "item")
STRENGTH_KEYS = ("strength", "score", "weight", "confidence", "probability")
_STRIP_CHARS = " \t\r\n\"'`*-•.,;:()[]{}"
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")
_LINE_PAIR = re.compile(r"^\s*(?:\d+[.)]\s*|[-*•]\s*)?(?P<name>[^:=(\d][^:=(]*?)\s*[:=(]\s*(?P<num>-?\d+(?:\.\d+)?)\s*(?P<pct>%)?\)?\s*$")


@dataclass
class ParseReport:
    """Counts of dropped and repaired items, plus a few examples per reason."""

    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})
    repaired: dict[str, int] = field(default_factory=lambda: {"case": 0, "fuzzy": 0})
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, example: Any, n: int = 1) -> None:
        if reason not in self.dropped:
            raise KeyError(f"unknown drop reason {reason!r}")
        self.dropped[reason] += n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(str(example)[:200])

    def to_dict(self) -> dict[str, Any]:
        return {"dropped": dict(self.dropped), "repaired": dict(self.repaired), "examples": {k: list(v) for k, v in self.examples.items()}}


def normalize_name(name: str) -> str:
    """Case-fold, turn `_`/`-` into spaces, collapse white space, strip quotes/bullets/punctuation."""
    name = _NUMBERING.sub("", name)
    name = name.replace("_", " ").replace("-", " ").casefold()
    return " ".join(name.split()).strip(_STRIP_CHARS)


class VocabularyMatcher:
    """Map a name the model wrote to a vocabulary label: exact, folded, then fuzzy.

    Args:
        labels: the vocabulary.
        cutoff: minimal `difflib` ratio for a fuzzy match.
    """

    def __init__(self, labels: Sequence[str], *, cutoff: float = FUZZY_CUTOFF) -> None:
        self.labels = list(labels)
        self._exact = set(self.labels)
        self._folded: dict[str, str] = {}
        for label in self.labels:
            self._folded.setdefault(normalize_name(label), label)
        self._folded_keys = list(self._folded)
        self.cutoff = cutoff

    def match(self, name: str, prefer: Sequence[str] | None = None) -> tuple[str | None, str]:
        """Returns (label or None, how) with how in {"exact", "case", "fuzzy", "unknown"}.

        `prefer` (the candidates shown in the prompt) is searched first for fuzzy matches, so a
        near-miss resolves to the candidate the model most likely meant.
        """
        if name in self._exact:
            return name, "exact"
        key = normalize_name(name)
        if not key:
            return None, "unknown"
        if key in self._folded:
            return self._folded[key], "case"
        if key.endswith("s") and key[:-1] in self._folded:  # plural
            return self._folded[key[:-1]], "fuzzy"
        if prefer:
            pref = {normalize_name(p): p for p in prefer if p in self._exact}
            hit = difflib.get_close_matches(key, list(pref), n=1, cutoff=self.cutoff)
            if hit:
                return pref[hit[0]], "fuzzy"
        hit = difflib.get_close_matches(key, self._folded_keys, n=1, cutoff=self.cutoff)
        if hit:
            return self._folded[hit[0]], "fuzzy"
        return None, "unknown"


def _as_strength(value: Any) -> float | None:
    """A number, a numeric string or a percentage -> float; anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        pct = text.endswith("%")
        try:
            number = float(text.rstrip("%").strip())
        except ValueError:
            return None
        return number / 100.0 if pct else number
    return None


def _extract_json(text: str) -> Any:
    """The first JSON object/array in `text` (code fences and chatter around it are ignored)."""
    text = re.sub(r"```(?:json)?", "", text)
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                obj, _ = decoder.raw_decode(text[i:])
            except json.JSONDecodeError:
                continue
            return obj
    raise ValueError("no JSON value found")


def parse_json_answer(text: str, report: ParseReport, *, default_strength: float = 1.0) -> list[tuple[str, float]]:
    """Read `{"related": [{"name": ..., "strength": 0-1}, ...]}` (and common variants).

    Accepted variants: a bare list; items as objects, `[name, strength]` pairs or plain strings
    (which get `default_strength`); other key spellings (`label`, `score`, ...); a strength given
    as a string or a percentage. When no JSON is found, `name: 0.8` lines are read instead.
    Items that cannot be read are counted as "malformed".

    Returns:
        Raw (name, strength) pairs, names as written (not yet matched to the vocabulary).
    """
    try:
        obj = _extract_json(text)
    except ValueError:
        pairs = []
        for line in text.splitlines():
            m = _LINE_PAIR.match(line)
            if m:
                value = float(m.group("num")) / (100.0 if m.group("pct") else 1.0)
                pairs.append((m.group("name").strip(), value))
        if not pairs:
            report.drop("malformed", text)
        return pairs
    items: Any = obj
    if isinstance(obj, dict):
        items = None
        for key in ("related", "neighbors", "neighbours", "results", "items", "answer"):
            if isinstance(obj.get(key), list):
                items = obj[key]
                break
        if items is None:  # {"knife": 0.9, "spoon": 0.8}
            items = [[k, v] for k, v in obj.items()] if obj and all(not isinstance(v, (dict, list)) for v in obj.values()) else None
    if not isinstance(items, list):
        report.drop("malformed", text)
        return []
    pairs: list[tuple[str, float]] = []
    for item in items:
        name: Any = None
        strength: Any = default_strength
        if isinstance(item, str):
            name = item
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            name, strength = item
        elif isinstance(item, dict):
            name = next((item[k] for k in NAME_KEYS if k in item), None)
            strength = next((item[k] for k in STRENGTH_KEYS if k in item), default_strength)
        value = _as_strength(strength)
        if not isinstance(name, str) or value is None:
            report.drop("malformed", item)
            continue
        pairs.append((name, value))
    return pairs


def clean_pairs(
    category: str,
    pairs: Iterable[tuple[str, float]],
    matcher: VocabularyMatcher,
    report: ParseReport,
    *,
    candidates: Sequence[str] | None = None,
) -> list[tuple[str, float]]:
    """Match names to the vocabulary and drop what is not a valid edge into `category`.

    Drops (and counts): unknown names, self-loops, duplicates (the first mention wins), strengths
    outside [0, 1] or not finite ("out_of_range"), and strength exactly 0 ("below_cut": the model
    said "unrelated").

    Returns:
        Valid (label, strength) pairs with strength in (0, 1], in answer order.
    """
    out: list[tuple[str, float]] = []
    taken: set[str] = set()
    for name, strength in pairs:
        label, how = matcher.match(name, prefer=candidates)
        if label is None:
            report.drop("unknown_name", f"{category}: {name!r}")
            continue
        if how in report.repaired:
            report.repaired[how] += 1
        if label == category:
            report.drop("self_loop", f"{category}: {name!r}")
            continue
        if label in taken:
            report.drop("duplicate", f"{category}: {name!r}")
            continue
        if not math.isfinite(strength) or strength < 0.0 or strength > 1.0:
            report.drop("out_of_range", f"{category}: {name!r} {strength}")
            continue
        if strength == 0.0:
            report.drop("below_cut", f"{category}: {name!r} 0")
            continue
        taken.add(label)
        out.append((label, float(strength)))
    return out
