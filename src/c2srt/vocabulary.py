"""Reading a vocabulary: a typed list of labels, or a file with one label a line.

Why one module: the CLI, the web page, `Recognizer`, the graph builder and the dataset readers all
take vocabularies from people, and must agree on what a label is (white space trimmed, never
empty) and on what is an error. The policy:

- a *file* (`read_label_file`) is a list someone maintains, often indexed by line (YOLO's
  `classes.txt`): one label a line, blank lines and `#` comments skipped, and a repeated label is
  an error naming both lines;
- *typed text* (`parse_labels`: `--labels "dog, cat"`, the page's text box) is a query: commas or
  new lines separate labels, runs of white space inside a label become one space, and a repeat is
  kept once;
- a *list* given in code (`check_labels`) must already be clean: an empty or repeated label is an
  error naming it.

`check_unique` is the one check for a label given twice: every vocabulary (a file, a list, a
graph's labels, a dataset's, a reader's label ids) calls it, and its message names the two places.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

_SEPARATORS = re.compile(r"[,\n\r]+")
COMMENT_PREFIX = "#"  # a line of a label file starting with this is skipped


def parse_labels(text: str | None, *, what: str = "the vocabulary") -> list[str]:
    """Labels from text separated by commas or new lines; blanks dropped, repeats kept once.

    Raises:
        ValueError: no label at all.

    Example:
        >>> parse_labels("dog, cat\\n hot   dog,,dog")
        ['dog', 'cat', 'hot dog']
    """
    labels: dict[str, None] = {}
    for part in _SEPARATORS.split(text or ""):
        name = " ".join(part.split())  # trim and collapse inner white space
        if name:
            labels.setdefault(name)
    if not labels:
        raise ValueError(f"{what} is empty: give labels separated by commas or new lines")
    return list(labels)


def check_unique(
    names: Sequence[Hashable], *, what: str = "the vocabulary", lines: Sequence[int] | None = None, kind: str = "label"
) -> None:
    """Raise ValueError for the first name given twice, naming both places.

    Args:
        names: the labels (or label ids), in order.
        what: where they come from, for the message: "the vocabulary", a file's path.
        lines: for a file read line by line, the 1-based line of each name (then `what` is the file).
        kind: what a name is, for the message ("label", "unseen label").

    Raises:
        ValueError: "`what`: duplicate label 'dog' (positions 1 and 3)", or for a file
            "`what`:`line`: duplicate label 'dog' (first on line 1)".
    """
    first: dict[Hashable, int] = {}
    for i, name in enumerate(names):
        j = first.setdefault(name, i)
        if j == i:
            continue
        if lines is not None:
            raise ValueError(f"{what}:{lines[i]}: duplicate {kind} {name!r} (first on line {lines[j]})")
        raise ValueError(f"{what}: duplicate {kind} {name!r} (positions {j + 1} and {i + 1})")


def read_label_file(path: str | os.PathLike[str], what: str = "label file") -> list[str]:
    """Labels from a UTF-8 text file, one per line (blank lines and `#` comments skipped).

    Args:
        path: the file (a byte-order mark is tolerated).
        what: what the file holds, for messages ("seen label list", "class list").

    Returns:
        The labels in file order, stripped of surrounding white space.

    Raises:
        FileNotFoundError: no such file (naming `what` and the path).
        ValueError: a repeated label (naming `file:line` of both), no label at all, or text that
            is not UTF-8 (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    labels: list[str] = []
    lines: list[int] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from e
            name = line.strip()
            if not name or name.startswith(COMMENT_PREFIX):
                continue
            labels.append(name)
            lines.append(lineno)
    check_unique(labels, what=str(path), lines=lines)
    if not labels:
        raise ValueError(f"{path}: no labels in this {what} (one label per line expected)")
    return labels


def check_labels(labels: Iterable[object], *, what: str = "the vocabulary") -> list[str]:
    """The labels as stripped strings, checked: at least one, none empty, none repeated.

    Raises:
        ValueError: naming the empty or repeated label (and its position).
    """
    names = [str(s).strip() for s in labels]
    if not names:
        raise ValueError(f"{what} is empty")
    for i, name in enumerate(names):
        if not name:
            raise ValueError(f"{what}: label {i + 1} is empty")
    check_unique(names, what=what)
    return names


def read_vocabulary(*, labels: str | None = None, labels_file: str | os.PathLike[str] | None = None) -> list[str]:
    """The vocabulary a front end was given: typed text (`labels`) or a file (`labels_file`), exactly one.

    Raises:
        ValueError: both or neither given, or a bad vocabulary (see `parse_labels`, `read_label_file`).
        FileNotFoundError: `labels_file` does not exist.
    """
    if (labels is None) == (labels_file is None):
        raise ValueError("give the vocabulary either as text or as a file, not both or neither")
    if labels_file is not None:
        return read_label_file(labels_file, "vocabulary file")
    return parse_labels(labels)
