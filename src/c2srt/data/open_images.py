"""Open Images v4 for zero-shot multi-label recognition (7,186 seen / 400 unseen labels).

Files, as distributed by Google (2018_04 release) and by BiAM:
- `classes-trainable.txt`: the seen label MIDs, one per line (7,186).
- `class-descriptions.csv`: `MID,display name` (no header).
- `top_400_unseen.csv`: the unseen labels: BiAM's file holds, in its first column, indices into
  the 2,594 unseen MIDs of `unseen_labels.pkl` (read with the restricted unpickler; a text file
  with one MID per line works too); a first column of MIDs is accepted directly.
- `<split>-annotations-human-imagelabels.csv`: `ImageID,Source,LabelName,Confidence`, one row per
  human-verified (image, label): Confidence 1 -> +1, 0 -> -1. Everything else is 0 (unknown).
- images at `<root>/<split>/<ImageID>.jpg` (the pattern is an option).

Label names: seen (classes-trainable order), then unseen (top-400 order). The matrix is stored
sparse (an image carries about ten verified labels among 7,586), so nothing here scales with
images x labels.
"""

from __future__ import annotations

import logging
from array import array
from pathlib import Path
from typing import Sequence

import numpy as np

from ..constants import IGNORE_LABEL, NEGATIVE, POSITIVE
from ..vocabulary import check_unique
from .base import DataProblem, MultiLabelDataset, Transform, finalize_dataset, read_lines, register_dataset

_logger = logging.getLogger(__name__)

_RELEASE_DIRS = ("", "2018_04/")
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "seen_file": tuple(f"{d}classes-trainable.txt" for d in _RELEASE_DIRS),
    "descriptions_file": tuple(f"{d}class-descriptions.csv" for d in _RELEASE_DIRS),
    "unseen_file": tuple(f"{d}top_400_unseen.csv" for d in _RELEASE_DIRS),
    "unseen_list_file": tuple(f"{d}unseen_labels.pkl" for d in _RELEASE_DIRS)
    + tuple(f"{d}unseen_labels.txt" for d in _RELEASE_DIRS),
}
_LABEL_FILE = "{split}-annotations-human-imagelabels.csv"
_LABEL_DIRS = ("", "{split}/", "2018_04/{split}/")
_HEADER = ("ImageID", "Source", "LabelName", "Confidence")
MID_PREFIX = "/"  # MIDs look like /m/0abc or /g/11xyz
DEFAULT_IMAGE_PATTERN = "{split}/{image_id}.jpg"


def _find(root: Path, given: str | None, candidates: Sequence[str], what: str, option: str) -> Path:
    tried = (given,) if given is not None else tuple(candidates)
    for cand in tried:
        path = Path(cand) if Path(cand).is_absolute() else root / cand
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"open_images: {what} not found (tried {', '.join(str(root / c) for c in tried)}); set data.options.{option}"
    )


def read_descriptions(path: Path) -> dict[str, str]:
    """MID -> display name from `class-descriptions.csv` (quoted names with commas allowed)."""
    import csv

    names: dict[str, str] = {}
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        for cells in reader:
            if len(cells) < 2 or not cells[0].startswith(MID_PREFIX):
                continue  # a header line or an empty line
            names[cells[0].strip()] = cells[1].strip()
    if not names:
        raise ValueError(f"{path}: no 'MID,name' rows")
    return names


def _read_mids(path: Path, what: str) -> list[tuple[int, str]]:
    """(line, MID) per non-blank line; duplicates raise ValueError naming both lines."""
    out = [(lineno, text.split(",")[0].strip().strip('"')) for lineno, text in read_lines(path, what)]
    check_unique([mid for _, mid in out], what=str(path), lines=[lineno for lineno, _ in out])
    return out


def _unseen_list(path: Path) -> list[str]:
    """The full unseen MID list that top_400_unseen.csv indexes (a pickle or a text file)."""
    if path.suffix == ".pkl":
        from ..safe_pickle import safe_load_pickle

        obj = safe_load_pickle(path)
        items = np.asarray(obj, dtype=object).reshape(-1).tolist()
        return [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in items]
    return [mid for _, mid in _read_mids(path, "unseen label list")]


def read_unseen(root: Path, unseen_file: str | None, unseen_list_file: str | None) -> tuple[Path, list[tuple[int, str]]]:
    """The unseen label file and the (line, MID) of its labels (the file holds indices or MIDs)."""
    path = _find(root, unseen_file, _CANDIDATES["unseen_file"], "unseen label file", "unseen_file")
    rows = [(lineno, text.split(",")[0].strip().strip('"')) for lineno, text in read_lines(path, "unseen label file")]
    if rows and not rows[0][1].startswith(MID_PREFIX) and not rows[0][1].lstrip("-").isdigit():
        rows = rows[1:]  # a header line
    if not rows:
        raise ValueError(f"{path}: no unseen labels")
    if all(cell.startswith(MID_PREFIX) for _, cell in rows):
        mids = rows
    else:
        full_path = _find(
            root,
            unseen_list_file,
            _CANDIDATES["unseen_list_file"],
            "unseen label list indexed by " + path.name,
            "unseen_list_file",
        )
        full = _unseen_list(full_path)
        mids = []
        for lineno, cell in rows:
            if not cell.lstrip("-").isdigit() or not 0 <= int(cell) < len(full):
                raise ValueError(
                    f"{path}:{lineno}: {cell!r} is neither a MID nor an index into the {len(full)} labels of {full_path.name}"
                )
            mids.append((lineno, full[int(cell)]))
    check_unique([mid for _, mid in mids], what=str(path), lines=[lineno for lineno, _ in mids], kind="unseen label")
    return path, mids


def _disambiguate(names: list[str], mids: list[str]) -> list[str]:
    """Later occurrences of a repeated display name get their MID appended, so names stay unique."""
    seen: set[str] = set()
    out = []
    for name, mid in zip(names, mids):
        out.append(name if name not in seen else f"{name} ({mid})")
        seen.add(name)
    renamed = sum(a != b for a, b in zip(names, out))
    if renamed:
        _logger.warning("open_images: %d repeated display name(s) made unique by appending the MID", renamed)
    return out


def _dedupe(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One value per (row, col): agreeing repeats collapse, conflicting ones become unknown (0)."""
    if rows.size == 0:
        return rows, cols, vals, 0
    key = rows.astype(np.int64) * k + cols
    order = np.argsort(key, kind="stable")
    key, vals = key[order], vals[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lo = np.minimum.reduceat(vals, starts)
    hi = np.maximum.reduceat(vals, starts)
    value = np.where(lo == hi, lo, IGNORE_LABEL).astype(np.int8)
    uk = key[starts]
    return uk // k, uk % k, value, int((lo != hi).sum())


@register_dataset("open_images")
def build_open_images(
    split: str,
    *,
    root: str,
    transform: Transform | None = None,
    skip_bad: bool = False,
    seen_file: str | None = None,
    descriptions_file: str | None = None,
    unseen_file: str | None = None,
    unseen_list_file: str | None = None,
    labels_file: str | None = None,
    image_pattern: str = DEFAULT_IMAGE_PATTERN,
    check_files: bool = True,
    check_images: bool = False,
) -> MultiLabelDataset:
    """Open Images v4 (7,186 seen / 400 unseen) from the official CSVs, with sparse labels.

    Args:
        split: "train" or "test".
        root: the Open Images folder.
        transform: PIL image -> tensor [3, H, W].
        skip_bad: drop images with malformed rows (and labels without a description) instead of raising.
        seen_file: `classes-trainable.txt` (default: searched in root and root/2018_04).
        descriptions_file: `class-descriptions.csv`.
        unseen_file: `top_400_unseen.csv` (indices into `unseen_list_file`, or MIDs).
        unseen_list_file: the 2,594 unseen MIDs that the indices refer to (`unseen_labels.pkl`).
        labels_file: the human image-label CSV of the split (default:
            `<split>-annotations-human-imagelabels.csv` in root, root/<split> or root/2018_04/<split>).
        image_pattern: image path relative to root; `{split}` and `{image_id}` are filled in
            (e.g. "{split}/{image_id[0]}/{image_id}.jpg" for sharded folders).
        check_files: check that each image file exists.
        check_images: decode every image once before use (cached; config: `data.check_images`).

    Raises:
        FileNotFoundError: a required file is missing (naming the paths tried).
        DataError: malformed rows (bad field count, confidence not 0/1), labels without a
            description or missing images, each with file and line, unless `skip_bad`.
    """
    import scipy.sparse as sp

    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"open_images: data.root {base} is not a folder")
    seen_path = _find(base, seen_file, _CANDIDATES["seen_file"], "seen label file (classes-trainable.txt)", "seen_file")
    desc_path = _find(base, descriptions_file, _CANDIDATES["descriptions_file"], "class-descriptions.csv", "descriptions_file")
    seen_rows = _read_mids(seen_path, "seen label file")
    unseen_path, unseen_rows = read_unseen(base, unseen_file, unseen_list_file)
    both = sorted({m for _, m in seen_rows} & {m for _, m in unseen_rows})
    if both:
        raise ValueError(f"open_images: label(s) {', '.join(both[:5])} are both seen ({seen_path.name}) and unseen")
    described = read_descriptions(desc_path)
    problems: list[tuple[int | None, DataProblem]] = []
    vocab: list[tuple[str, bool]] = []  # (MID, seen)
    for rows, is_seen, path in ((seen_rows, True, seen_path), (unseen_rows, False, unseen_path)):
        for lineno, mid in rows:
            if mid not in described:
                problems.append((None, DataProblem(str(path), lineno, f"label {mid!r} has no name in {desc_path.name}")))
                continue
            vocab.append((mid, is_seen))
    mids = [m for m, _ in vocab]
    names = _disambiguate([described[m] for m in mids], mids)
    column = {m: j for j, m in enumerate(mids)}
    k = len(mids)

    label_path = _find(
        base,
        labels_file,
        [d.format(split=split) + _LABEL_FILE.format(split=split) for d in _LABEL_DIRS],
        f"{split} image-label CSV",
        "labels_file",
    )
    image_index: dict[str, int] = {}
    rows_a, cols_a, vals_a = array("q"), array("q"), array("b")  # int64, int64, int8
    out_of_vocab = 0
    with open(label_path, encoding="utf-8-sig") as fh:
        header = fh.readline().strip().split(",")
        if tuple(h.strip().strip('"') for h in header[:4]) != _HEADER:
            raise ValueError(f"{label_path}:1: expected the header {','.join(_HEADER)}, got {','.join(header)}")
        for lineno, line in enumerate(fh, 2):
            if not line.strip():
                continue
            fields = [f.strip().strip('"') for f in line.rstrip("\r\n").split(",")]
            if len(fields) != len(_HEADER) or not fields[0]:
                problems.append(
                    (
                        None,
                        DataProblem(
                            str(label_path), lineno, f"expected {len(_HEADER)} fields ({','.join(_HEADER)}), got {len(fields)}"
                        ),
                    )
                )
                continue
            image_id, _, mid, confidence = fields
            if confidence in ("1", "1.0"):
                value = POSITIVE
            elif confidence in ("0", "0.0"):
                value = NEGATIVE
            else:
                row = image_index.setdefault(image_id, len(image_index))
                problems.append((row, DataProblem(str(label_path), lineno, f"confidence {confidence!r} is not 0 or 1")))
                continue
            col = column.get(mid)
            if col is None:
                out_of_vocab += 1  # a label outside the 7,586 of the protocol: not part of the task
                continue
            row = image_index.setdefault(image_id, len(image_index))
            rows_a.append(row)
            cols_a.append(col)
            vals_a.append(value)
    r, c, v, conflicts = _dedupe(
        np.frombuffer(rows_a, dtype=np.int64),
        np.frombuffer(cols_a, dtype=np.int64),
        np.frombuffer(vals_a, dtype=np.int8),
        max(k, 1),
    )
    if conflicts:
        _logger.warning("open_images %s: %d (image, label) pair(s) both confirmed and rejected; set to unknown", split, conflicts)
    _logger.info(
        "open_images %s: %d images, %d labels, %d rows outside the vocabulary ignored",
        split,
        len(image_index),
        r.size,
        out_of_vocab,
    )
    labels = sp.csr_matrix((v, (r, c)), shape=(len(image_index), k), dtype=np.int8)
    try:
        paths = [str(base / image_pattern.format(split=split, image_id=i)) for i in image_index]
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
            f"data.options.image_pattern: {image_pattern!r} is not a valid pattern ({e!r}); use {{split}} and {{image_id}}"
        ) from e
    return finalize_dataset(
        name="open_images",
        split=split,
        paths=paths,
        labels=labels,
        label_names=names,
        seen_mask=np.array([s for _, s in vocab], dtype=bool),
        problems=problems,
        transform=transform,
        skip_bad=skip_bad,
        check_files=check_files,
        check_images=check_images,
        label_ids=mids,
    )
