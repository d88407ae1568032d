"""Careful reading of language-model answers into (label, strength) pairs.

A model asked for JSON answers in many shapes: fenced JSON with chatter around it, trailing commas,
single or typographic quotes, a truncated tail, a bare list of names, bullet or numbered lists with
`name (0.8)` / `name: strong`, markdown tables, sections such as "Not related:", comma lists inside
a sentence, full-width or NUL characters, apologies. This module reads them as a careful person
would, in two steps:

1. `parse_answer(text, report)` finds the items and their strengths. The text is NFKC-normalised
   (full-width -> ASCII), control and zero-width characters are removed and `<think>` blocks are
   skipped. The last JSON (or Python-literal) value is read when there is one, repaired if needed;
   otherwise list lines are (see `_read_lines`), and only the list: once an answer has bullet,
   numbered or table lines, its other sentences are commentary and are not read for names.
   Strengths may be numbers, percentages, fractions ("8/10"), words (`WORD_STRENGTHS`) or
   booleans; an answer whose numbers are on a 0-10 or 0-100 scale is rescaled to [0, 1].
2. `clean_pairs(...)` matches each name to the vocabulary with `VocabularyMatcher` (whole names
   only: "dog" never matches "hot dog") and drops what is not a valid edge, counting the reason in
   a `ParseReport` that ends up in the graph's `report`.

Nothing here raises on bad model output.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .graph import DROP_REASONS
from .names import MARKUP, VocabularyMatcher, clean_text, name_key, strip_markup

MAX_EXAMPLES = 5  # dropped items kept per reason in the report, for debugging prompts
MAX_ANSWER_CHARS = 100_000  # a longer answer (a runaway generation) is cut before reading
MAX_JSON_DEPTH = 4  # nesting levels searched for JSON inside text that does not parse
MAX_JSON_ATTEMPTS = 200  # bracketed spans tried per answer
MAX_LITERAL_CHARS = 20_000  # largest text handed to ast.literal_eval (its cost grows with nesting)
DEFAULT_STRENGTH = 1.0  # an item listed without a strength: the model called it related
MAX_NAME_WORDS = 6  # a list piece with more words is a sentence, not a name

NAME_KEYS = ("name", "label", "category", "object", "item", "candidate", "class", "concept", "neighbor", "neighbour", "tag", "term")
STRENGTH_KEYS = (
    "strength", "score", "weight", "confidence", "probability", "relatedness", "correlation",
    "similarity", "relevance", "value", "level", "related", "is_related", "relevant",
)  # fmt: skip
LIST_KEYS = ("related", "neighbors", "neighbours", "results", "items", "answer", "related_categories", "categories", "relations", "output", "result")

# Strength words (after "strongly" -> "strong", "extremely" -> "very"; a trailing "related",
# "correlation", "link", ... is ignored; "fairly/quite/rather/pretty/somewhat" before a word is
# ignored too). Negative words map to 0, which `clean_pairs` drops as "below_cut".
WORD_STRENGTHS: dict[str, float] = {
    "very strong": 0.9, "very high": 0.9, "very close": 0.9,
    "strong": 0.8, "high": 0.8, "close": 0.8,
    "moderate": 0.5, "medium": 0.5, "fair": 0.5,
    "weak": 0.3, "low": 0.3, "slight": 0.3, "loose": 0.3, "less": 0.3, "minor": 0.3,
    "very weak": 0.1, "very low": 0.1, "very slight": 0.1, "very loose": 0.1,
    "yes": DEFAULT_STRENGTH, "true": DEFAULT_STRENGTH, "related": DEFAULT_STRENGTH,
    "no": 0.0, "false": 0.0, "none": 0.0, "unrelated": 0.0, "irrelevant": 0.0, "not related": 0.0,
}  # fmt: skip

_NUM = r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)"
_WORDS = (
    r"(?P<very>(?:very|extremely|really)\s+)?(?:(?:fairly|quite|rather|pretty|somewhat)\s+)?"
    r"(?P<base>strong|high|close|moderate|medium|fair|weak|low|slight|loose|less|minor)(?:ly)?"
    r"(?:[\s_-]+(?:relat|correlat|associat|connect|link|relevan|co-?occur)\w*)?"
    r"|(?P<neg>(?:not|no)\s+(?:\w+\s+)?(?:relat|correlat|associat|connect|relevan)\w*|unrelated|irrelevant|none|no|false|null|n/a|not|never|unlikely|rarely|hardly)"
    r"|(?P<pos>yes|true|related)"
)
_STRENGTH_KEY_ALT = "|".join(STRENGTH_KEYS)
_STRENGTH_KEY_LIKE = re.compile(r"strength|score|weight|confiden|probab|relat|correl|similar|relevan|associat|likel", re.IGNORECASE)
# A strength at the start of a text: "0.8", "80%", "8/10", "(strong)", "strength: 0.8", "very weak link".
_STRENGTH_AT = re.compile(
    rf"\s*[(\[]?\s*(?:(?:{_STRENGTH_KEY_ALT})\s*[:=]?\s*)?"
    rf"(?:(?P<num>{_NUM})\s*(?:(?P<pct>%)|/\s*(?P<den>\d+(?:\.\d+)?))?|\b(?:{_WORDS})\b)"
    r"(?=$|[\s)\],;:.!?|\-])",
    re.IGNORECASE,
)
# Where a strength may follow a name inside a piece: "name: 0.8", "name (0.8)", "name - strong", "name | 0.8".
_NAME_SEP = re.compile(r"\s*(?:[:=|(\[]|->|→|\s[-–—]+\s|[–—])\s*")
_LATER_STRENGTH = re.compile(r"(?:[:=(\[,|]|\s[-–—]+\s)")
_TRAILING_NUMBER = re.compile(rf"^(?P<name>.*?[^\d\s.])\s+(?P<num>{_NUM})\s*(?P<pct>%)?$")
_BULLET = re.compile(r"^\s*(?:[-*•+·▪►‣◦]|\d{1,3}[.)]|\(\d{1,3}\)|#\d+[.:)]?|[a-zA-Z][.)](?=\s))\s+")
_TABLE_RULE = re.compile(r"^[\s|:\-]+$")
_FENCE = re.compile(r"```[\w-]*")
_LIST_SPLIT = re.compile(r"\s*[,;]\s*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")
_VERB_LEAD = re.compile(r"^(?P<lead>.{0,100}?\b(?:are|include|includes|including)\b)\s+(?P<rest>[^.!?]*[,;][^.!?]*)[.!]?$", re.IGNORECASE)
_CHAT = re.compile(r"\b(?:i|i'm|i've|i'd|me|my|you|your|sorry|sure|certainly|cannot|can't|unable|apologi[sz]e|please|hope|here's|here|let's|let me|no idea|don't know|do not know|not sure|unsure)\b", re.IGNORECASE)
_SKIP_HEAD = re.compile(r"\b(?:notes?|explanations?|reason\w*|because|comments?|caveats?|disclaimer|format|examples?|candidates|thoughts?|analysis)\b", re.IGNORECASE)
_NEG_HEAD = re.compile(r"\b(?:not|n't|never)\s+(?:\w+\s+)?(?:relat|correlat|associat|connect|relevan|link)\w*|\bunrelated\b|\birrelevant\b|\bexclud\w*|\bno\s+(?:relation|correlation|connection|link)", re.IGNORECASE)
_RELATED_HEAD = re.compile(r"\b(?:relat|correlat|associat|relevan|neighbou?r|co-?occur)\w*", re.IGNORECASE)
_CONJUNCTION = re.compile(r"\s+(?:and|&|or|\+|plus)\s+|\s*/\s*")


@dataclass
class ParseReport:
    """Counts of dropped and repaired items, plus a few examples per reason.

    `dropped` reasons are `DROP_REASONS`; `repaired` counts names matched after normalisation
    ("case": Unicode, case, spacing or punctuation; "plural"; "compact": spaces or hyphens left
    out; "fuzzy": a one-letter typo of a prompt candidate) and strengths put into range
    ("rescaled": a 0-10 or 0-100 answer; "clamped": above 1).
    """

    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})
    repaired: dict[str, int] = field(default_factory=lambda: {k: 0 for k in ("case", "plural", "compact", "fuzzy", "rescaled", "clamped")})
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, example: Any, n: int = 1) -> None:
        if reason not in self.dropped:
            raise KeyError(f"unknown drop reason {reason!r}")
        self.dropped[reason] += n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(str(example)[:200])

    def repair(self, how: str, n: int = 1) -> None:
        self.repaired[how] = self.repaired.get(how, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return {"dropped": dict(self.dropped), "repaired": dict(self.repaired), "examples": {k: list(v) for k, v in self.examples.items()}}


# ---------------------------------------------------------------------------------------- strengths
@dataclass
class _Strength:
    value: float
    kind: str  # "number" (may be on a 0-10 / 0-100 scale), "unit" (already in [0, 1] terms), "default"


def _strength_at(text: str) -> tuple[_Strength, int] | None:
    """A strength at the start of `text` and where it ends, or None."""
    m = _STRENGTH_AT.match(text)
    if m is None:
        return None
    if m.group("num") is not None:
        value = float(m.group("num"))
        if m.group("pct"):
            return _Strength(value / 100.0, "unit"), m.end()
        if m.group("den"):
            den = float(m.group("den"))
            return (_Strength(value / den, "unit"), m.end()) if den > 0 else None
        return _Strength(value, "number"), m.end()
    if m.group("neg"):
        return _Strength(0.0, "unit"), m.end()
    if m.group("pos"):
        return _Strength(DEFAULT_STRENGTH, "unit"), m.end()
    word = ("very " if m.group("very") else "") + m.group("base").lower()
    return _Strength(WORD_STRENGTHS.get(word, WORD_STRENGTHS[m.group("base").lower()]), "unit"), m.end()


def _as_strength(value: Any) -> _Strength | None:
    """A JSON strength: number, bool, numeric/percent/fraction/word string, null (no strength)."""
    if value is None:
        return _Strength(DEFAULT_STRENGTH, "default")
    if isinstance(value, bool):
        return _Strength(DEFAULT_STRENGTH if value else 0.0, "unit")
    if isinstance(value, (int, float)):
        return _Strength(float(value), "number")
    if isinstance(value, str):
        hit = _strength_at(_DECIMAL_COMMA.sub(".", value))
        return hit[0] if hit is not None else None
    return None


def _head_mode(head: str) -> tuple[str, float | None]:
    """What a section heading or lead-in says about the items after it."""
    if _SKIP_HEAD.search(head):
        return "skip", None
    if _NEG_HEAD.search(head):
        return "negative", 0.0
    for m in re.finditer(rf"\b(?:{_WORDS})\b", head, re.IGNORECASE):
        if m.group("base"):
            word = ("very " if m.group("very") else "") + m.group("base").lower()
            return "strength", WORD_STRENGTHS.get(word, WORD_STRENGTHS[m.group("base").lower()])
    if _RELATED_HEAD.search(head):
        return "related", None  # "Related:" ends a "Not related:" section
    return "neutral", None


# ---------------------------------------------------------------------------------------- JSON
def _bracket_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, end, depth) of every balanced {...} / [...] in `text`, in one pass (quotes respected).

    Quotes count only inside brackets, and an apostrophe inside a word ("don't") is no quote. A
    closer that does not match the innermost opener closes the nearest opener it matches (the
    unclosed ones inside are abandoned: a truncated item), or is ignored.
    """
    spans: list[tuple[int, int, int]] = []
    stack: list[tuple[str, int]] = []  # (expected closer, start)
    quote = ""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote or (ch == "\n" and quote == "'"):
                quote = ""
        elif stack and ch in "\"'":
            if ch == '"' or not (i > 0 and text[i - 1].isalnum() and i + 1 < n and text[i + 1].isalnum()):
                quote = ch
        elif ch in "{[":
            stack.append(("}" if ch == "{" else "]", i))
        elif ch in "}]":
            for k in range(len(stack) - 1, -1, -1):
                if stack[k][0] == ch:
                    spans.append((stack[k][1], i + 1, k))
                    del stack[k:]
                    break
        i += 1
    return sorted(spans)


_FAIL = object()
_TRAILING_COMMA = re.compile(r",\s*(?=[}\]])")
_BARE_KEY = re.compile(r"(?<=[{,])\s*([A-Za-z_][\w\- ]*?)\s*:")
_PY_WORDS = {"true": "True", "false": "False", "null": "None"}


def _loads(chunk: str) -> Any:
    """JSON, else JSON with trailing commas / bare keys repaired, else a Python literal; or _FAIL."""
    repaired = _BARE_KEY.sub(lambda m: f'"{m.group(1)}":', _TRAILING_COMMA.sub("", chunk))
    for attempt in (chunk, repaired):
        try:
            return json.loads(attempt)
        except (json.JSONDecodeError, RecursionError):
            pass
    if len(chunk) <= MAX_LITERAL_CHARS:
        py = re.sub(r"\b(true|false|null)\b", lambda m: _PY_WORDS[m.group(1)], chunk)
        try:  # single quotes, trailing commas; literals only, never code
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SyntaxWarning)  # "invalid decimal literal" and the like
                return ast.literal_eval(py)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return _FAIL


def _json_values(text: str) -> list[Any]:
    """Every outermost JSON-like object/array in `text` that parses, left to right.

    A span that does not parse is searched for parsing spans inside it (the complete items of a
    truncated list), at most `MAX_JSON_DEPTH` levels deep and `MAX_JSON_ATTEMPTS` tries in all, so
    a pathological answer costs linear time.
    """
    values = []
    covered_until = -1
    attempts = 0
    for start, end, depth in _bracket_spans(text):
        if start < covered_until or depth > MAX_JSON_DEPTH:
            continue
        attempts += 1
        if attempts > MAX_JSON_ATTEMPTS:
            break
        value = _loads(text[start:end])
        if value is not _FAIL and isinstance(value, (dict, list)):
            values.append(value)
            covered_until = end
    return values


def _is_item(obj: Any) -> bool:
    """A dict naming one item: a name key, and no nested lists/dicts (those make it a container)."""
    return isinstance(obj, dict) and any(isinstance(obj.get(k), str) for k in NAME_KEYS) and not any(isinstance(v, (list, dict)) for v in obj.values())


def _json_item(item: Any, default: _Strength) -> tuple[str, _Strength | None] | None:
    """(name, strength or None if unreadable) of one list item, or None if it is no item at all."""
    if isinstance(item, str):
        name, strength = _split_piece(item)
        return (name, strength or default) if name else None
    if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
        return item[0], _as_strength(item[1])
    if isinstance(item, dict):
        name = next((item[k] for k in NAME_KEYS if isinstance(item.get(k), str)), None)
        if name is not None:
            key = next((k for k in STRENGTH_KEYS if k in item), None)
            key = key or next((k for k in item if isinstance(k, str) and _STRENGTH_KEY_LIKE.search(k) and k not in NAME_KEYS), None)
            raw = item[key] if key is not None else None
            return name, default if raw is None else _as_strength(raw)
        if len(item) == 1:  # {"fork": 0.9}
            ((key, raw),) = item.items()
            if str(key) not in STRENGTH_KEYS and not isinstance(raw, (dict, list)):
                return str(key), _as_strength(raw)
    return None


def _json_groups(obj: Any, depth: int = 0) -> list[tuple[list[Any], str, float | None]] | None:
    """The item lists of a JSON value with the mode their key implies, or None if there are none."""
    if isinstance(obj, list):
        return [(obj, "neutral", None)]
    if not isinstance(obj, dict) or depth > 3:
        return None
    if _is_item(obj):
        return [([obj], "neutral", None)]
    lists = {str(k): v for k, v in obj.items() if isinstance(v, list)}
    groups = []
    for key, value in lists.items():
        words = key.replace("_", " ")
        mode, strength = _head_mode(words)
        if name_key(key).replace(" ", "_") in LIST_KEYS or mode in ("negative", "strength"):
            groups.append((value, mode, strength))
    if groups:
        return groups
    if len(lists) == 1:
        return [(next(iter(lists.values())), "neutral", None)]
    if obj and not lists and all(not isinstance(v, dict) for v in obj.values()):  # {"knife": 0.9, "spoon": 0.8}
        return [([[k, v] for k, v in obj.items()], "neutral", None)]
    dicts = [v for v in obj.values() if isinstance(v, dict)]
    if len(dicts) == 1:
        return _json_groups(dicts[0], depth + 1)
    return None


def _read_json(values: list[Any], report: ParseReport) -> list[tuple[str, _Strength]] | None:
    """Items of the answer's JSON: the last value with related items (an echoed template or a
    draft comes before the answer), plus "not related" lists of values after it."""
    if all(_is_item(v) for v in values):  # JSON lines, or the complete items of a truncated list
        chosen: list[tuple[list[Any], str, float | None]] | None = [(values, "neutral", None)]
    else:
        chosen = None
        for value in reversed(values):
            groups = _json_groups(value)
            if groups is None:
                continue
            chosen = (chosen or []) + groups
            if any(items and mode not in ("negative", "skip") for items, mode, _ in groups):
                break
    if chosen is None:
        return None
    out = []
    for items, mode, strength in chosen:
        if mode == "skip":
            continue
        default = _Strength(DEFAULT_STRENGTH if strength is None else strength, "default" if strength is None else "unit")
        for item in items:
            read = _json_item(item, default)
            if read is None or read[1] is None or not read[0].strip():
                report.drop("malformed", item)
                continue
            out.append((read[0], _Strength(0.0, "unit") if mode == "negative" else read[1]))
    return out


def _truncated_strings(text: str) -> list[str]:
    """Complete quoted strings of an unclosed JSON array (an answer cut off mid-list)."""
    start = text.find("[")
    if start < 0:
        return []
    return [m.group(1) for m in re.finditer(r'"([^"\\\n]{1,200})"\s*(?=,)', text[start:])]


# ---------------------------------------------------------------------------------------- text lines
def _split_piece(piece: str) -> tuple[str, _Strength | None]:
    """A list piece -> (name, strength or None): "fork (0.8)", "fork: strong", "fork - 80%", "fork 0.8"."""
    piece = piece.strip()
    m = _NAME_SEP.search(piece)
    while m is not None and m.start() == 0:  # a piece starting with a separator: no name before it
        hit = _strength_at(piece)
        if hit is not None:
            return "", hit[0]
        m = _NAME_SEP.search(piece, m.end())
    if m is not None:
        name, rest = piece[: m.start()], piece[m.end() :]
        hit = _strength_at(rest)
        if hit is None:
            for later in _LATER_STRENGTH.finditer(rest):
                hit = _strength_at(rest[later.end() :])
                if hit is not None:
                    break
        return strip_markup(name), hit[0] if hit else None
    hit = _strength_at(piece)
    if hit is not None and hit[1] >= len(piece.rstrip(".!")):
        return "", hit[0]
    m2 = _TRAILING_NUMBER.match(piece)
    if m2:
        value = float(m2.group("num"))
        return strip_markup(m2.group("name")), _Strength(value / 100.0, "unit") if m2.group("pct") else _Strength(value, "number")
    return strip_markup(piece), None


def _read_pieces(text: str, mode: tuple[str, float | None], out: list[tuple[str, _Strength]]) -> None:
    """Append the items of one line (or the tail after a lead-in) to `out`."""
    kind, strength = mode
    if kind == "skip":
        return
    default = _Strength(DEFAULT_STRENGTH if strength is None else strength, "default" if strength is None else "unit")
    last_named: int | None = None
    for piece in _LIST_SPLIT.split(_DECIMAL_COMMA.sub(".", text)):
        name, value = _split_piece(piece)
        if not name:
            if value is not None and last_named is not None and out[last_named][1].kind == "default":
                out[last_named] = (out[last_named][0], value)  # "fork, 0.9" (CSV)
            continue
        if not name_key(name) or _CHAT.search(name) or len(name.split()) > MAX_NAME_WORDS:
            continue  # chat ("Sure", "I'm sorry") or a sentence, not a name
        out.append((name, _Strength(0.0, "unit") if kind == "negative" else (value or default)))
        last_named = len(out) - 1


def _heading(body: str) -> str | None:
    """The text of a heading line ("Not related:", "**Weakly related**", "Unrelated"), else None."""
    text = body.strip()
    bold = len(text) > 4 and text[:2] in ("**", "__") and text[-2:] == text[:2] and text[:2] not in text[2:-2]
    text = strip_markup(text)
    if body.rstrip(MARKUP + " ").endswith(":") or bold:
        return text
    if ":" in text:
        return None  # "Not related: car" is a lead-in with items
    name, value = _split_piece(text)
    if (value is None and _NEG_HEAD.search(text)) or (not name and value is not None and value.value == 0.0):
        return text  # "Unrelated", "Not related categories", "These are not related"
    return None


def _read_line(body: str, mode: tuple[str, float | None], out: list[tuple[str, _Strength]]) -> tuple[str, float | None]:
    """Read one line (or sentence) into `out`; returns the section mode for the lines after it."""
    heading = _heading(body)
    if heading is not None:
        return _head_mode(heading)
    head, sep, tail = body.partition(":")
    if sep and name_key(head) in NAME_KEYS:  # YAML "- name: fork"
        _read_pieces(tail, mode, out)
    elif sep and _strength_at(tail) is None and not all(_split_piece(head)):  # lead-in "Related: fork, knife"
        lead = _head_mode(head)
        _read_pieces(tail, lead if lead[0] != "neutral" else mode, out)
    elif not sep and (verb := _VERB_LEAD.match(body)):  # "The related ones are fork, knife and cup."
        lead = _head_mode(verb.group("lead"))
        _read_pieces(verb.group("rest"), lead if lead[0] != "neutral" else mode, out)
    else:
        _read_pieces(body, mode, out)
    return mode


def _read_table_row(line: str, mode: tuple[str, float | None], out: list[tuple[str, _Strength]]) -> None:
    """`| fork | 0.9 | used together |`: the first non-number cell is the name, the next full strength its strength."""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if _TABLE_RULE.match(line) or len(cells) < 2:
        return
    full = []
    for cell in cells:
        hit = _strength_at(cell)
        full.append(hit[0] if hit is not None and hit[1] >= len(cell.rstrip(".!")) else None)
    names = [i for i, (c, f) in enumerate(zip(cells, full)) if f is None and c]
    if not names or not any(f is not None for f in full[names[0] + 1 :]):
        return  # a header row has no strength cell
    before = len(out)
    _read_pieces(cells[names[0]], mode, out)
    if len(out) == before + 1 and mode[0] != "negative":
        out[-1] = (out[-1][0], next(f for f in full[names[0] + 1 :] if f is not None))


def _read_lines(text: str) -> list[tuple[str, _Strength]]:
    """Items from list lines.

    Recognised: bullet/numbered lines ("- fork", "2) knife (0.8)"), markdown table rows, YAML-like
    `- name: fork` / `strength: 0.9` lines, headings and lead-ins that set a section's meaning
    ("Not related:" -> dropped, "Weakly related:" -> 0.3, "Note:" -> not read), `name: strength`
    lines and comma/semicolon lists (also after "... are" / "...:"). When any bullet, numbered or
    table line exists, only those lines (their first sentence) and headings are read: the rest is
    commentary, and so are sub-bullets.
    """
    raw_lines = _FENCE.sub("\n", text).expandtabs(4).splitlines()
    indents = [len(ln) - len(ln.lstrip()) for ln in raw_lines if _BULLET.match(ln)]
    top = min(indents, default=0)
    is_row = [ln.strip().startswith("|") and ln.count("|") >= 2 for ln in raw_lines]
    structured = bool(indents) or any(is_row)
    out: list[tuple[str, _Strength]] = []
    mode: tuple[str, float | None] = ("neutral", None)
    for raw, row in zip(raw_lines, is_row):
        line = raw.strip()
        bullet = _BULLET.match(raw)
        if not line or (bullet and len(raw) - len(raw.lstrip()) > top):
            continue  # a sub-bullet under an item is a comment on it
        if line.startswith("#") and not bullet:
            mode = _head_mode(line.lstrip("#"))
        elif row:
            _read_table_row(line, mode, out)
        elif bullet:
            mode = _read_line(_SENTENCE.split(line[bullet.end() :], 1)[0], mode, out)
        elif structured:
            key, sep, value = line.partition(":")
            if sep and name_key(key) in STRENGTH_KEYS and out and out[-1][1].kind == "default":  # YAML "strength: 0.9"
                hit = _as_strength(value.strip())
                out[-1] = (out[-1][0], hit) if hit is not None else out[-1]
            elif (heading := _heading(line)) is not None:
                mode = _head_mode(heading)
        else:
            for sentence in _SENTENCE.split(line):
                mode = _read_line(sentence, mode, out)
    return out


# ---------------------------------------------------------------------------------------- answers
def _rescale(items: list[tuple[str, _Strength]], report: ParseReport) -> list[tuple[str, float]]:
    """Numbers on a 0-10 or 0-100 scale -> [0, 1]; everything else unchanged (clamped later).

    The scale is read from the whole answer: when some number exceeds 1 and none is a fraction
    below 1, all numbers are divided by 10 (largest <= 10) or 100 (largest <= 100).
    """
    numbers = [s.value for _, s in items if s.kind == "number" and math.isfinite(s.value)]
    scale = 1.0
    if numbers and max(numbers) > 1.0 and not any(0.0 < abs(v) < 1.0 for v in numbers):
        top = max(numbers)
        scale = 10.0 if top <= 10.0 else 100.0 if top <= 100.0 else 1.0
        if scale != 1.0:
            report.repair("rescaled", len(numbers))
    return [(name, s.value / scale if s.kind == "number" else s.value) for name, s in items]


def parse_answer(text: str, report: ParseReport) -> list[tuple[str, float]]:
    """Read a model's answer into raw (name, strength) pairs, as a careful person would.

    Expected shape: `{"related": [{"name": ..., "strength": 0-1}, ...]}`; every common variant is
    read as well (see the module docstring). An item without a strength gets `DEFAULT_STRENGTH`; a
    "not related" item or section gets 0 (dropped later as "below_cut"). An answer with nothing to
    read (an apology, garbage) is counted once as "malformed"; an item whose strength cannot be read
    is counted as "malformed" too.

    Returns:
        (name as written, strength) pairs, names not yet matched to the vocabulary; strengths
        rescaled but not yet clamped (see `clean_pairs`).
    """
    if not isinstance(text, str):
        report.drop("malformed", text)
        return []
    body = clean_text(text[:MAX_ANSWER_CHARS])
    values = _json_values(body)
    items = _read_json(values, report) if values else None
    if items is None:
        strings = _truncated_strings(body) if not values and "[" in body else []
        if strings:
            items = [(n, s or _Strength(DEFAULT_STRENGTH, "default")) for n, s in (_split_piece(x) for x in strings) if n]
        elif values:
            items = []  # JSON of an unknown shape: its strings are not names
        else:
            items = _read_lines(body)
        if not items:
            report.drop("malformed", text)
            return []
    return _rescale(items, report)


def _split_conjunction(name: str, matcher: VocabularyMatcher, candidates: Sequence[str] | None) -> list[str] | None:
    """ "knife and fork" -> ["knife", "fork"] when every part is a label (and the whole is not)."""
    parts = [p for p in _CONJUNCTION.split(strip_markup(name)) if p.strip()]
    if len(parts) < 2:
        return None
    labels = [matcher.match(p, candidates)[0] for p in parts]
    return labels if all(lb is not None for lb in labels) else None  # type: ignore[return-value]


def clean_pairs(
    category: str,
    pairs: Iterable[tuple[str, float]],
    matcher: VocabularyMatcher,
    report: ParseReport,
    *,
    candidates: Sequence[str] | None = None,
) -> list[tuple[str, float]]:
    """Match names to the vocabulary and drop what is not a valid edge into `category`.

    Drops (and counts): unknown or ambiguous names ("unknown_name"), self-loops, duplicates (the
    first mention wins), strengths that are negative or not finite ("out_of_range") and strength 0
    ("below_cut": the model said "unrelated"). Strengths above 1 are clamped to 1 (counted as
    repaired "clamped"). "knife and fork" counts as two names when both are labels.

    Returns:
        Valid (label, strength) pairs with strength in (0, 1], in answer order.
    """
    out: list[tuple[str, float]] = []
    taken: set[str] = set()
    for name, strength in pairs:
        label, how = matcher.match(name, candidates)
        labels = [label] if label is not None else None
        if labels is None:
            labels = _split_conjunction(name, matcher, candidates) if how == "unknown" else None
            if labels is None:
                report.drop("unknown_name", f"{category}: {name!r}" + (" (ambiguous)" if how == "ambiguous" else ""))
                continue
            how = "case"
        if how != "exact":
            report.repair(how, len(labels))
        for lb in labels:
            if lb == category:
                report.drop("self_loop", f"{category}: {name!r}")
                continue
            if lb in taken:
                report.drop("duplicate", f"{category}: {name!r}")
                continue
            if not math.isfinite(strength) or strength < 0.0:
                report.drop("out_of_range", f"{category}: {name!r} {strength}")
                continue
            if strength == 0.0:
                report.drop("below_cut", f"{category}: {name!r} 0")
                continue
            if strength > 1.0:
                report.repair("clamped")
            taken.add(lb)
            out.append((lb, min(float(strength), 1.0)))
    return out
