"""Readers for data of your own: JSONL / CSV listings, and COCO / YOLO label folders.

Why: most users bring a folder of images and a list of labels per image, not a benchmark. These
readers accept the two most common shapes of such data and apply the same bad-data policy as
the benchmark readers (every problem reported with its file and line).

Listing (`jsonl` / `csv`): `<root>/<split>.jsonl` with one object per line,
`{"image": "a.jpg", "labels": ["dog", "grass"], "negatives": ["cat"]}` ("negatives" optional), or
`<root>/<split>.csv` with columns `image,labels[,negatives]` (labels separated by `|` or `;`, a
header line optional). Image paths are relative to the listing's folder. The vocabulary comes from
`seen.txt` and `unseen.txt` (one label per line); labels an image does not list are negative
(fully annotated data) or unknown, per `missing_as`.

COCO / YOLO (`coco`): `classes.txt` (line i = name of class i), `images/<split>/*.jpg` and
`labels/<split>/<image stem>.txt` with lines `class cx cy w h`. An image's target is the set of
classes of its boxes (+1), every other class -1; an image without a label file is background.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..constants import IGNORE_LABEL, NEGATIVE, POSITIVE
from ..images import has_image_suffix
from ..vocabulary import read_label_file
from .base import (
    DataProblem,
    MultiLabelDataset,
    RowSource,
    Transform,
    finalize_dataset,
    register_dataset,
)

_logger = logging.getLogger(__name__)

MISSING_AS = {"negative": NEGATIVE, "unknown": IGNORE_LABEL}
LISTING_SUFFIXES = (".jsonl", ".csv")
_LABEL_SEPARATORS = re.compile(r"[|;]")
YOLO_MIN_FIELDS = 5  # class cx cy w h (segments add more coordinates)
COCO_SPLITS = {"train": "train", "test": "val"}


# --------------------------------------------------------------------------------- listings
def _listing_file(root: Path, split: str, given: str | None) -> Path:
    if given is not None:
        path = Path(given)
        return path if path.is_absolute() else root / path
    for suffix in LISTING_SUFFIXES:
        cand = root / f"{split}{suffix}"
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no listing for split {split!r} in {root} (expected {split}.jsonl or {split}.csv)")


def _split_labels(text: str | None) -> list[str]:
    return [t.strip() for t in _LABEL_SEPARATORS.split(text or "") if t.strip()]


def _read_listing(path: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """(line, row, error) per record: row = {"image", "labels", "negatives"} or None with an error."""
    records: list[tuple[int, dict[str, Any] | None, str | None]] = []
    if path.suffix.lower() == ".jsonl":
        with open(path, encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    records.append((lineno, None, f"not valid JSON ({e.msg} at column {e.colno})"))
                    continue
                records.append((lineno, *_check_json_row(obj)))
        return records
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: listing must be .jsonl or .csv")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        columns = ["image", "labels", "negatives"]
        first = True
        for cells in reader:
            lineno = reader.line_num
            if not cells or not any(c.strip() for c in cells):
                continue
            if first and cells[0].strip().lower() == "image":  # a header line names the columns
                columns = [c.strip().lower() for c in cells]
                first = False
                missing = {"image", "labels"} - set(columns)
                if missing:
                    raise ValueError(f"{path}:{lineno}: header lacks column(s) {', '.join(sorted(missing))}")
                continue
            first = False
            if len(cells) > len(columns) or len(cells) < 2:
                records.append((lineno, None, f"expected columns {','.join(columns)}, got {len(cells)} field(s)"))
                continue
            row = dict(zip(columns, cells))
            image = row.get("image", "").strip()
            if not image:
                records.append((lineno, None, "empty image path"))
                continue
            records.append(
                (
                    lineno,
                    {
                        "image": image,
                        "labels": _split_labels(row.get("labels")),
                        "negatives": _split_labels(row.get("negatives")),
                    },
                    None,
                )
            )
    return records


def _check_json_row(obj: Any) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        return None, 'missing or empty "image" (a path string)'
    out: dict[str, Any] = {"image": image.strip()}
    for key in ("labels", "negatives"):
        value = obj.get(key, [])
        if key == "labels" and "labels" not in obj:
            return None, 'missing "labels" (a list of label names)'
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f'"{key}" must be a list of strings'
        out[key] = [v.strip() for v in value if v.strip()]
    unknown_keys = set(obj) - {"image", "labels", "negatives"}
    if unknown_keys:
        return None, f"unknown key(s) {', '.join(sorted(unknown_keys))} (expected image, labels, negatives)"
    return out, None


def _vocabulary(root: Path, seen_file: str, unseen_file: str, listings: Sequence[Path]) -> tuple[list[str], list[str]]:
    """Seen and unseen names; without seen.txt, every listed label of the splits' files not unseen."""
    unseen_path = root / unseen_file
    unseen = read_label_file(unseen_path, "unseen label list") if unseen_path.is_file() else []
    seen_path = root / seen_file
    if seen_path.is_file():
        seen = read_label_file(seen_path, "seen label list")
    else:
        found: set[str] = set()
        for path in listings:
            for _, row, _ in _read_listing(path):
                if row is not None:
                    found.update(row["labels"], row["negatives"])
        seen = sorted(found - set(unseen))
        _logger.info("%s not found: %d seen labels taken from the listings", seen_path, len(seen))
    both = sorted(set(seen) & set(unseen))
    if both:
        raise ValueError(f"{root}: label(s) {', '.join(both)} listed both in {seen_file} and {unseen_file}")
    return seen, unseen


def build_listing(
    split: str,
    *,
    root: str,
    transform: Transform | None = None,
    skip_bad: bool = False,
    train_file: str | None = None,
    test_file: str | None = None,
    seen_file: str = "seen.txt",
    unseen_file: str = "unseen.txt",
    missing_as: str = "negative",
    check_files: bool = True,
    check_images: bool = False,
) -> MultiLabelDataset:
    """A dataset from a JSONL or CSV listing (see the module docstring for the formats).

    Args:
        split: "train" or "test".
        root: folder holding the listings and the label files.
        transform: PIL image -> tensor [3, H, W].
        skip_bad: drop rows with problems instead of raising.
        train_file, test_file: listing of each split (default: `<split>.jsonl` or `<split>.csv`);
            relative to `root`.
        seen_file, unseen_file: vocabulary files in `root`; without `seen_file`, the seen labels
            are all labels found in the listings (sorted) minus the unseen ones.
        missing_as: target of vocabulary labels an image does not mention: "negative" (-1, for
            fully annotated data) or "unknown" (0, ignored by the loss and the metrics).
        check_files: check that each image file exists.
        check_images: decode every image once before use (cached; config: `data.check_images`).

    Raises:
        DataError: malformed rows, unknown labels, a label both positive and negative, missing
            or unreadable images (each with its file and line), unless `skip_bad`.
    """
    if missing_as not in MISSING_AS:
        raise ValueError(f"data.options.missing_as: {missing_as!r} is not one of {', '.join(MISSING_AS)}")
    base = Path(root)
    path = _listing_file(base, split, train_file if split == "train" else test_file)
    others = []
    for s, given in (("train", train_file), ("test", test_file)):
        try:
            others.append(_listing_file(base, s, given))
        except FileNotFoundError:
            pass
    seen, unseen = _vocabulary(base, seen_file, unseen_file, others or [path])
    names = seen + unseen
    column = {n: j for j, n in enumerate(names)}
    fill = MISSING_AS[missing_as]
    folder = path.parent
    paths: list[str] = []
    sources: list[RowSource] = []
    rows: list[np.ndarray] = []
    problems: list[tuple[int | None, DataProblem]] = []
    for lineno, row, error in _read_listing(path):
        if row is None:
            problems.append((None, DataProblem(str(path), lineno, error or "malformed row")))
            continue
        bad = [n for n in row["labels"] + row["negatives"] if n not in column]
        if bad:
            problems.append(
                (
                    None,
                    DataProblem(
                        str(path),
                        lineno,
                        f"unknown label(s) {', '.join(map(repr, dict.fromkeys(bad)))} (not in {seen_file} / {unseen_file})",
                    ),
                )
            )
            continue
        clash = sorted(set(row["labels"]) & set(row["negatives"]))
        if clash:
            problems.append((None, DataProblem(str(path), lineno, f"label(s) {', '.join(clash)} both positive and negative")))
            continue
        target = np.full(len(names), fill, dtype=np.int8)
        target[[column[n] for n in row["negatives"]]] = NEGATIVE
        target[[column[n] for n in row["labels"]]] = POSITIVE
        image = Path(row["image"])
        paths.append(str(image if image.is_absolute() else folder / image))
        sources.append((str(path), lineno))
        rows.append(target)
    labels = np.stack(rows) if rows else np.zeros((0, len(names)), dtype=np.int8)
    seen_mask = np.arange(len(names)) < len(seen)
    return finalize_dataset(
        name=f"listing {path.name}",
        split=split,
        paths=paths,
        labels=labels,
        label_names=names,
        seen_mask=seen_mask,
        problems=problems,
        transform=transform,
        skip_bad=skip_bad,
        check_files=check_files,
        check_images=check_images,
        sources=sources,
    )


register_dataset("jsonl")(build_listing)
register_dataset("csv")(build_listing)


# ------------------------------------------------------------------------------ COCO / YOLO
def _name_group(value: str | Sequence[str] | None, root: Path, what: str) -> list[str] | None:
    """A list of names, or a file of names (path as given, else relative to root)."""
    if value is None:
        return None
    if isinstance(value, str):
        path = Path(value)
        if not path.is_file() and (root / path).is_file():
            path = root / path
        if not path.is_file():
            raise ValueError(f"data.options.{what}: {value!r} is not a file; give a list of class names or a file of them")
        return read_label_file(path, f"{what} class list")
    return [str(v) for v in value]


def _parse_yolo(path: Path, n_classes: int) -> tuple[set[int], list[DataProblem]]:
    """Class ids of a YOLO label file, and its malformed lines."""
    classes: set[int] = set()
    problems: list[DataProblem] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < YOLO_MIN_FIELDS:
                problems.append(DataProblem(str(path), lineno, f"expected 'class cx cy w h', got {line.strip()!r}"))
                continue
            try:
                cls = int(fields[0])
            except ValueError:
                problems.append(DataProblem(str(path), lineno, f"class id {fields[0]!r} is not an integer"))
                continue
            if not 0 <= cls < n_classes:
                problems.append(DataProblem(str(path), lineno, f"class id {cls} out of range (classes.txt has {n_classes})"))
                continue
            try:
                coords = [float(v) for v in fields[1:]]
            except ValueError:
                problems.append(DataProblem(str(path), lineno, f"malformed coordinates {' '.join(fields[1:])!r}"))
                continue
            if not all(math.isfinite(c) for c in coords):
                problems.append(DataProblem(str(path), lineno, "non-finite coordinate"))
                continue
            classes.add(cls)
    return classes, problems


def build_coco(
    split: str,
    *,
    root: str,
    transform: Transform | None = None,
    skip_bad: bool = False,
    seen: str | Sequence[str] | None = None,
    unseen: str | Sequence[str] | None = None,
    classes_file: str = "classes.txt",
    train_split: str = COCO_SPLITS["train"],
    test_split: str = COCO_SPLITS["test"],
    check_images: bool = False,
) -> MultiLabelDataset:
    """A dataset from a COCO / YOLO label folder (e.g. COCO8), as multi-label targets.

    Args:
        split: "train" or "test".
        root: folder with `classes.txt`, `images/<sub>/` and `labels/<sub>/`.
        transform: PIL image -> tensor [3, H, W].
        skip_bad: drop images whose label file has malformed lines instead of raising.
        seen, unseen: class names (a list, or a file with one per line). Default: all classes
            seen; when only one group is given, the other is the remaining classes. Each group
            keeps the order of `classes.txt`.
        classes_file: class names, line i = class id i.
        train_split, test_split: the sub-folders read for "train" and "test".
        check_images: decode every image once before use (cached; config: `data.check_images`).

    Raises:
        ValueError: an unknown or doubly assigned class name in `seen` / `unseen`.
        DataError: a label line with a bad class id or malformed numbers (naming file:line), or a
            label file without an image, unless `skip_bad`.
    """
    base = Path(root)
    classes = read_label_file(base / classes_file, "class list")
    seen_names = _name_group(seen, base, "seen")
    unseen_names = _name_group(unseen, base, "unseen")
    for group, what in ((seen_names, "seen"), (unseen_names, "unseen")):
        unknown = [n for n in group or [] if n not in classes]
        if unknown:
            raise ValueError(
                f"data.options.{what}: unknown class(es) {', '.join(map(repr, unknown))} (not in {base / classes_file})"
            )
    if seen_names is None and unseen_names is None:
        seen_names, unseen_names = list(classes), []
    elif seen_names is None:
        seen_names = [c for c in classes if c not in set(unseen_names or [])]
    elif unseen_names is None:
        unseen_names = [c for c in classes if c not in set(seen_names)]
    both = sorted(set(seen_names) & set(unseen_names or []))
    if both:
        raise ValueError(f"data.options.seen/unseen: class(es) {', '.join(both)} are in both groups")
    seen_set, unseen_set = set(seen_names), set(unseen_names or [])
    names = [c for c in classes if c in seen_set] + [c for c in classes if c in unseen_set]
    column = np.full(len(classes), -1, dtype=np.int64)  # class id -> vocabulary column (-1: not used)
    for j, n in enumerate(names):
        column[classes.index(n)] = j

    sub = {"train": train_split, "test": test_split}.get(split)
    if sub is None:
        raise ValueError(f"coco: unknown split {split!r}; valid splits: train, test")
    image_dir, label_dir = base / "images" / sub, base / "labels" / sub
    if not image_dir.is_dir():
        raise FileNotFoundError(f"coco: image folder not found: {image_dir}")
    images = sorted(p for p in image_dir.iterdir() if has_image_suffix(p.name) and p.is_file())
    labels = np.full((len(images), len(names)), NEGATIVE, dtype=np.int8)
    problems: list[tuple[int | None, DataProblem]] = []
    for i, img in enumerate(images):
        label_file = label_dir / f"{img.stem}.txt"
        if not label_file.is_file():
            continue  # no label file: a background image, all negative (as YOLO reads it)
        ids, bad = _parse_yolo(label_file, len(classes))
        problems.extend((i, p) for p in bad)
        cols = column[sorted(ids)]
        labels[i, cols[cols >= 0]] = POSITIVE
    if label_dir.is_dir():
        stems = {p.stem for p in images}
        for lf in sorted(label_dir.glob("*.txt")):
            if lf.stem not in stems:
                problems.append((None, DataProblem(str(lf), None, f"label file without an image in {image_dir}")))
    seen_mask = np.arange(len(names)) < len(seen_set)
    return finalize_dataset(
        name=f"coco {base.name}",
        split=split,
        paths=[str(p) for p in images],
        labels=labels,
        label_names=names,
        seen_mask=seen_mask,
        problems=problems,
        transform=transform,
        skip_bad=skip_bad,
        check_files=False,  # listed from disk, so they exist
        check_images=check_images,
    )


register_dataset("coco")(build_coco)
