"""NUS-WIDE for zero-shot multi-label recognition (the 925 / 81 protocol of DESIGN.md).

Vocabulary: the 925 seen labels are the tags of `TagList1k.txt` that are not among the 81
concepts of `Concepts81.txt` (1000 - 75 = 925, in TagList1k order); the 81 human-annotated concepts
(Concepts81 order) are unseen. Label names: 925 seen, then 81 unseen (1006).

Targets: training images get their seen tags from `AllTags1k.txt` (+1 / -1) and 0 for the unseen
columns; test images get the seen tags from `AllTags1k.txt` and the unseen concepts from the
human ground truth (`Labels_<concept>_Test.txt`, or `AllLabels/Labels_<concept>.txt`).

Two on-disk layouts are read:
- `official`: the files as distributed by NUS (ImageList/, Groundtruth/, NUS_WID_Tags/,
  Concepts81.txt) and the images under `Flickr/<folder>/<file>.jpg`. The image lists use Windows
  paths (`actor\\0001_2124494179.jpg`, possibly with a `C:\\ImageData\\Flickr\\` prefix); the last
  two components name the image.
- `mkt`: the MKT / BiAM preparation, the folder as MKT's README ships it:

      NUS-WIDE/
        Flickr/<folder>/<file>.jpg       the images
        features/nus_wide_train.h5       per image `<name>-labels` (925 seen values)
        features/nus_wide_test.h5        per image `<name>-labels` (1006) and `<name>-labels_81`
        img_names.pkl, test_img_names.pkl  {"img_names": [...]}, read with the restricted unpickler
        Concepts925.txt, Concepts81.txt  the seen and unseen label names, in the h5 column order
        label_emb.pt                     not needed: label embeddings come from the CLIP text tower

  Label values as MKT reads them: 1 positive, -1 negative, 0 not annotated (MKT's AP and ranking
  loss leave 0 out); `zero_label: negative` reads 0 as negative instead. Without Concepts925.txt
  the seen labels come from TagList1k.txt as in the official layout.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..constants import IGNORE_LABEL, NEGATIVE, POSITIVE
from ..vocabulary import read_label_file
from .base import DataProblem, MultiLabelDataset, Transform, finalize_dataset, read_lines, register_dataset

_logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "official", "mkt")
# Where each official file is looked for, relative to the root, in order.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "image_list": ("ImageList/Imagelist.txt", "Imagelist.txt"),
    "train_list": ("ImageList/TrainImagelist.txt", "TrainImagelist.txt"),
    "test_list": ("ImageList/TestImagelist.txt", "TestImagelist.txt"),
    "concepts_file": ("Concepts81.txt", "ConceptsList/Concepts81.txt", "NUS_WID_Tags/Concepts81.txt"),
    "seen_file": ("Concepts925.txt",),  # MKT's folder: the 925 seen labels in its h5 column order
    "tags_file": ("NUS_WID_Tags/TagList1k.txt", "TagList1k.txt"),
    "all_tags_file": ("NUS_WID_Tags/AllTags1k.txt", "AllTags1k.txt"),
    "train_test_labels_dir": ("Groundtruth/TrainTestLabels", "TrainTestLabels"),
    "all_labels_dir": ("Groundtruth/AllLabels", "AllLabels"),
}
MKT_NAMES = {"train": "img_names.pkl", "test": "test_img_names.pkl"}
MKT_H5 = {"train": "features/nus_wide_train.h5", "test": "features/nus_wide_test.h5"}
MKT_NAMES_KEY = "img_names"  # the key of the dict stored in MKT's pickles
ZERO_LABELS = {"unknown": IGNORE_LABEL, "negative": NEGATIVE}  # how a 0 in MKT's h5 labels is read
_PATH_SEPARATORS = re.compile(r"[\\/]+")


def _find_optional(root: Path, given: str | None, key: str, *, directory: bool = False) -> Path | None:
    """The file (or folder) for `key`: `given` (relative to root) or the first default that exists."""
    for cand in (given,) if given is not None else _CANDIDATES[key]:
        path = Path(cand) if Path(cand).is_absolute() else root / cand
        if path.is_dir() if directory else path.is_file():
            return path
    return None


def _find(root: Path, given: str | None, key: str) -> Path:
    """As `_find_optional`, but a missing file raises FileNotFoundError naming the paths tried."""
    path = _find_optional(root, given, key)
    if path is None:
        tried = ", ".join(str(root / c) for c in ((given,) if given is not None else _CANDIDATES[key]))
        raise FileNotFoundError(f"nus_wide: {key.replace('_', ' ')} not found (tried {tried}); set data.options.{key}")
    return path


def image_key(line: str) -> str:
    """`C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg` or `actor/0001_...jpg` -> `actor/0001_...jpg`."""
    parts = [p for p in _PATH_SEPARATORS.split(line.strip()) if p]
    return "/".join(parts[-2:])


def vocabulary(tags: Sequence[str], concepts: Sequence[str]) -> tuple[list[str], list[str]]:
    """Seen = tags not among the concepts (tag order); unseen = the concepts (concept order)."""
    concept_set = set(concepts)
    seen = [t for t in tags if t not in concept_set]
    _logger.info(
        "nus_wide: %d tags, %d concepts, %d shared; %d seen + %d unseen labels",
        len(tags),
        len(concepts),
        len(tags) - len(seen),
        len(seen),
        len(concepts),
    )
    return seen, list(concepts)


def _parse_binary_row(line: bytes, width: int) -> np.ndarray | None:
    """A whitespace-separated row of `width` 0/1 values, or None when malformed."""
    tokens = line.split()
    if len(tokens) != width:
        return None
    joined = b"".join(tokens)
    if len(joined) != width:  # some token longer than one character
        return None
    row = np.frombuffer(joined, dtype=np.uint8) - ord("0")
    return row if row.max(initial=0) <= 1 else None


def _read_column_file(path: Path, expected: int) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """A one-value-per-line 0/1 file: values (-1 where malformed) and (ordinal, line, message) problems."""
    raw = path.read_bytes()
    tokens = raw.split()
    joined = b"".join(tokens)
    if len(tokens) == expected and len(joined) == expected:  # fast path: one 0/1 character per line
        values = np.frombuffer(joined, dtype=np.uint8).astype(np.int16) - ord("0")
        if values.min(initial=0) >= 0 and values.max(initial=0) <= 1:
            return values, []
    values = np.full(expected, -1, dtype=np.int16)
    problems: list[tuple[int, int, str]] = []
    ordinal = 0
    for lineno, text in read_lines(path, "label file"):
        if ordinal < expected:
            if text in ("0", "1"):
                values[ordinal] = int(text)
            else:
                problems.append((ordinal, lineno, f"expected 0 or 1, got {text[:40]!r}"))
        ordinal += 1
    if ordinal != expected:
        raise ValueError(f"{path}: {ordinal} values for {expected} images (the file must have one line per listed image)")
    return values, problems


def _read_official(
    root: Path,
    split: str,
    options: dict[str, str | None],
    images_dir: Path,
    seen: list[str],
    unseen: list[str],
    tags: list[str],
) -> tuple[list[str], np.ndarray, list[tuple[int | None, DataProblem]]]:
    image_list = _find(root, options["image_list"], "image_list")
    split_list = _find(root, options[f"{split}_list"], f"{split}_list")
    all_tags = _find(root, options["all_tags_file"], "all_tags_file")
    problems: list[tuple[int | None, DataProblem]] = []

    index: dict[str, int] = {}
    n_all = 0
    for lineno, text in read_lines(image_list, "image list"):
        key = image_key(text)
        if key in index:
            problems.append((None, DataProblem(str(image_list), lineno, f"duplicate image {key!r}")))
        index.setdefault(key, n_all)
        n_all += 1

    # rows of this split: (ordinal in the split list, key, row of AllTags1k)
    entries: list[tuple[int, str, int]] = []
    split_lines = list(read_lines(split_list, f"{split} image list"))
    for ordinal, (lineno, text) in enumerate(split_lines):
        key = image_key(text)
        if key not in index:
            problems.append((None, DataProblem(str(split_list), lineno, f"image {key!r} is not in {image_list.name}")))
            continue
        entries.append((ordinal, key, index[key]))

    tag_col = {t: j for j, t in enumerate(tags)}
    seen_tag_idx = np.array([tag_col[t] for t in seen], dtype=np.int64)  # [K_seen] columns of AllTags1k
    k = len(seen) + len(unseen)
    labels = np.full((len(entries), k), IGNORE_LABEL, dtype=np.int8)
    wanted: dict[int, list[int]] = {}  # AllTags1k row -> rows of this split (streamed: the file is ~540 MB)
    for r, (_, _, tag_row) in enumerate(entries):
        wanted.setdefault(tag_row, []).append(r)
    n_rows = 0
    with open(all_tags, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            for r in wanted.get(n_rows, ()):
                values = _parse_binary_row(line, len(tags))
                if values is None:
                    key = entries[r][1]
                    problems.append((r, DataProblem(str(all_tags), lineno, f"expected {len(tags)} values of 0/1 (image {key})")))
                    continue
                labels[r, : len(seen)] = np.where(values[seen_tag_idx] > 0, POSITIVE, NEGATIVE)
            n_rows += 1
    if n_rows != n_all:
        raise ValueError(f"{all_tags}: {n_rows} rows for the {n_all} images of {image_list} (one row per image, same order)")

    if split == "test":
        _read_concepts(root, options, labels, entries, len(split_lines), n_all, unseen, len(seen), problems)

    paths = [str(images_dir / key) for _, key, _ in entries]
    return paths, labels, problems


def _read_concepts(
    root: Path,
    options: dict[str, str | None],
    labels: np.ndarray,
    entries: list[tuple[int, str, int]],
    n_split: int,
    n_all: int,
    unseen: list[str],
    offset: int,
    problems: list[tuple[int | None, DataProblem]],
) -> None:
    """Fill the unseen columns of the test rows from the human concept labels (in place)."""
    tt_dir = _find_optional(root, options["train_test_labels_dir"], "train_test_labels_dir", directory=True)
    all_dir = _find_optional(root, options["all_labels_dir"], "all_labels_dir", directory=True)
    if tt_dir is None and all_dir is None:
        raise FileNotFoundError(
            f"nus_wide: no concept ground truth in {root} (expected Groundtruth/TrainTestLabels/ or Groundtruth/AllLabels/); "
            "set data.options.train_test_labels_dir or all_labels_dir"
        )
    split_ord = np.array([e[0] for e in entries], dtype=np.int64)
    all_row = np.array([e[2] for e in entries], dtype=np.int64)
    for j, concept in enumerate(unseen):
        path = tt_dir / f"Labels_{concept}_Test.txt" if tt_dir is not None else None
        if path is not None and path.is_file():
            values, bad = _read_column_file(path, n_split)
            rows = split_ord
        else:
            path = (all_dir / f"Labels_{concept}.txt") if all_dir is not None else path
            if path is None or not path.is_file():
                raise FileNotFoundError(f"nus_wide: ground truth of concept {concept!r} not found: {path}")
            values, bad = _read_column_file(path, n_all)
            rows = all_row
        picked = values[rows]
        labels[:, offset + j] = np.where(picked > 0, POSITIVE, NEGATIVE)
        if bad:
            where = {int(o): r for r, o in enumerate(rows)}
            for ordinal, lineno, message in bad:
                if ordinal in where:
                    problems.append((where[ordinal], DataProblem(str(path), lineno, message)))


def _mkt_name_to_key(name: str) -> str:
    """MKT's `actor_0001_2124494179.jpg` -> `actor/0001_2124494179.jpg` (folder names may hold '_')."""
    t = name.split("_")
    return "/".join(["_".join(t[:-2]), f"{t[-2]}_{t[-1]}"]) if len(t) >= 3 else name


def _mkt_values(row: np.ndarray, zero: int) -> np.ndarray:
    """MKT's label values: > 0 positive, < 0 negative, 0 as `zero` (MKT leaves it out)."""
    return np.where(row > 0, POSITIVE, np.where(row < 0, NEGATIVE, zero)).astype(np.int8)


def _read_mkt(
    root: Path,
    split: str,
    names_file: str | None,
    h5_file: str | None,
    label_key: str,
    unseen_key: str,
    images_dir: Path,
    n_seen: int,
    n_unseen: int,
    zero: int = IGNORE_LABEL,
) -> tuple[list[str], np.ndarray, list[tuple[int | None, DataProblem]]]:
    from ..safe_pickle import safe_load_pickle

    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is in the test extra
        raise ImportError("reading the MKT layout of NUS-WIDE needs h5py: pip install c2srt[openimages]") from e
    names_path = root / (names_file or MKT_NAMES[split])
    h5_path = root / (h5_file or MKT_H5[split])
    obj = safe_load_pickle(names_path)
    if isinstance(obj, dict):
        if MKT_NAMES_KEY not in obj:
            raise ValueError(f"{names_path}: a dict without the key {MKT_NAMES_KEY!r} (keys: {', '.join(map(str, obj))})")
        obj = obj[MKT_NAMES_KEY]
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in np.asarray(obj, dtype=object).reshape(-1).tolist()]
    if not h5_path.is_file():
        raise FileNotFoundError(f"nus_wide (mkt layout): label file not found: {h5_path}; set data.options.h5_file")
    k = n_seen + n_unseen
    labels = np.full((len(names), k), IGNORE_LABEL, dtype=np.int8)
    problems: list[tuple[int | None, DataProblem]] = []

    def problem(i: int, message: str) -> None:  # image i's labels are unusable: the file and why
        problems.append((i, DataProblem(str(h5_path), None, message)))

    with h5py.File(h5_path, "r") as h5:
        for i, name in enumerate(names):
            key = label_key.format(name=name)
            if key not in h5:
                problem(i, f"no dataset {key!r} (image {i} of {names_path.name}); set data.options.label_key")
                continue
            row = np.asarray(h5[key]).reshape(-1)
            values = _mkt_values(row, zero)
            if row.size == k:
                labels[i] = values
            elif row.size == n_seen:
                labels[i, :n_seen] = values
                if split == "test":
                    ukey = unseen_key.format(name=name)
                    if ukey not in h5:
                        problem(i, f"no dataset {ukey!r} for the unseen labels; set data.options.unseen_key")
                        continue
                    urow = np.asarray(h5[ukey]).reshape(-1)
                    if urow.size != n_unseen:
                        problem(i, f"dataset {ukey!r} has {urow.size} values, expected {n_unseen}")
                        continue
                    labels[i, n_seen:] = _mkt_values(urow, zero)
            else:
                problem(i, f"dataset {key!r} has {row.size} values, expected {k} or {n_seen}")
    paths = [str(images_dir / _mkt_name_to_key(n)) for n in names]
    return paths, labels, problems


@register_dataset("nus_wide")
def build_nus_wide(
    split: str,
    *,
    root: str,
    transform: Transform | None = None,
    skip_bad: bool = False,
    layout: str = "auto",
    images_dir: str = "Flickr",
    check_files: bool = True,
    image_list: str | None = None,
    train_list: str | None = None,
    test_list: str | None = None,
    concepts_file: str | None = None,
    tags_file: str | None = None,
    all_tags_file: str | None = None,
    train_test_labels_dir: str | None = None,
    all_labels_dir: str | None = None,
    names_file: str | None = None,
    h5_file: str | None = None,
    label_key: str = "{name}-labels",
    unseen_key: str = "{name}-labels_81",
    seen_file: str | None = None,
    zero_label: str = "unknown",
    check_images: bool = False,
) -> MultiLabelDataset:
    """NUS-WIDE (925 seen tags / 81 unseen concepts) from the official files or MKT's preparation.

    Args:
        split: "train" or "test".
        root: the NUS-WIDE folder.
        transform: PIL image -> tensor [3, H, W].
        skip_bad: drop rows with problems instead of raising.
        layout: "official", "mkt" or "auto" (official when an image list is found, else mkt).
        images_dir: folder of the images (`<images_dir>/<folder>/<file>.jpg`), relative to root.
        check_files: check that each image file exists.
        check_images: decode every image once before use (cached; config: `data.check_images`).
        image_list, train_list, test_list, concepts_file, tags_file, all_tags_file,
        train_test_labels_dir, all_labels_dir: official files, relative to root (default: the
            distribution's names, searched in the usual places).
        names_file: mkt: image-name pickle (default `img_names.pkl` / `test_img_names.pkl`).
        h5_file: mkt: label file (default `features/nus_wide_{train,test}.h5`).
        label_key, unseen_key: mkt: dataset names in the h5 file, `{name}` = image name. A label
            vector holds 925 seen or 1006 (seen, then unseen) values; with 925, the test split
            reads the 81 unseen ones from `unseen_key`. Values > 0 are positive, < 0 negative.
        seen_file: mkt: the seen label names in h5 column order (default `Concepts925.txt`; when
            absent, the seen labels come from TagList1k.txt).
        zero_label: mkt: how a 0 value is read, "unknown" (as MKT's code does) or "negative".

    Raises:
        FileNotFoundError: a required file is missing (naming the paths tried).
        DataError: malformed rows, images missing from the lists or the disk (with file and
            line), unless `skip_bad`.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"data.options.layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    if zero_label not in ZERO_LABELS:
        raise ValueError(f"data.options.zero_label: {zero_label!r} is not one of {', '.join(ZERO_LABELS)}")
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"nus_wide: data.root {base} is not a folder")
    if layout == "auto":
        official = _find_optional(base, image_list, "image_list") is not None
        mkt = (base / (names_file or MKT_NAMES[split])).is_file()
        if not official and not mkt:
            raise FileNotFoundError(
                f"nus_wide: {base} holds neither the official image lists (ImageList/Imagelist.txt) nor MKT's {MKT_NAMES[split]}"
            )
        layout = "official" if official else "mkt"
    concepts = read_label_file(_find(base, concepts_file, "concepts_file"), "concept list")
    seen_path = _find_optional(base, seen_file, "seen_file") if layout == "mkt" else None
    if seen_path is not None:  # MKT's folder names its seen labels itself, in its h5 column order
        tags: list[str] = []
        seen, unseen = read_label_file(seen_path, "seen label list"), list(concepts)
    else:
        tags = read_label_file(_find(base, tags_file, "tags_file"), "tag list")
        seen, unseen = vocabulary(tags, concepts)
    img_root = Path(images_dir) if Path(images_dir).is_absolute() else base / images_dir
    if layout == "official":
        options = {
            "image_list": image_list,
            "train_list": train_list,
            "test_list": test_list,
            "all_tags_file": all_tags_file,
            "train_test_labels_dir": train_test_labels_dir,
            "all_labels_dir": all_labels_dir,
        }
        paths, labels, problems = _read_official(base, split, options, img_root, seen, unseen, tags)
    else:
        paths, labels, problems = _read_mkt(
            base, split, names_file, h5_file, label_key, unseen_key, img_root, len(seen), len(unseen),
            ZERO_LABELS[zero_label],
        )  # fmt: skip
    names = seen + unseen
    return finalize_dataset(
        name="nus_wide",
        split=split,
        paths=paths,
        labels=labels,
        label_names=names,
        seen_mask=np.arange(len(names)) < len(seen),
        problems=problems,
        transform=transform,
        skip_bad=skip_bad,
        check_files=check_files,
        check_images=check_images,
    )
