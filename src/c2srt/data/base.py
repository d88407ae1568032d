"""The dataset contract, the dataset registry and the policy for bad data.

Every reader turns its benchmark's files into one `MultiLabelDataset`: image paths, a label matrix
with values +1 / -1 / 0 (`POSITIVE`, `NEGATIVE`, `IGNORE_LABEL`), the vocabulary (seen labels
first, then unseen) and the seen / unseen masks. Training and evaluation code then never needs to
know where the data came from.

Bad data policy (why): a typo in a label file, a missing or a broken image should stop a run
*before* a day of GPU time, and the error should list every problem at once, each with its file
and line, so one round of fixes suffices. Readers therefore collect `DataProblem`s (with
`check_images`, every image is decoded once too: `data/check.py`) and raise a `DataError` listing
them; with `skip_bad=True` the rows at fault are dropped instead, counted in `dataset.skipped` and
logged. An image that still fails while loading (changed since the check, or not checked) then
stops the run, or with `skip_bad` is skipped: its place in the batch goes to the next readable
image, and the batch says which image was skipped (`collate_samples`, `"skipped"`), so the trainer
can count it.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..constants import IGNORE_LABEL, NEGATIVE, POSITIVE
from ..images import ImageReadError, open_rgb
from ..registry import DATASETS
from ..vocabulary import check_unique
from .check import check_image_files

if TYPE_CHECKING:
    from ..config import DataCfg

_logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
MAX_PROBLEMS_SHOWN = 50  # problems spelled out in a DataError message; the rest are counted
SKIPPED_KEY = "skipped"  # sample / batch key: indices of images skipped while loading (skip_bad)
_PIXEL_MAX = 255.0  # 8-bit images -> [0, 1] floats when no transform is given

Transform = Callable[[Image.Image], torch.Tensor]


# ------------------------------------------------------------------------------------ problems
@dataclass(frozen=True)
class DataProblem:
    """One thing wrong with the data: where (file and 1-based line, if any) and what.

    Args:
        file: the file at fault (a label file, a listing, or the image itself).
        line: 1-based line number in `file`, or None when the whole file is at fault.
        message: what is wrong, in words.
    """

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


def format_problems(problems: Sequence[DataProblem], limit: int = MAX_PROBLEMS_SHOWN) -> str:
    """One problem per line, the first `limit` of them, then how many more there are."""
    lines = [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


class DataError(ValueError):
    """The data has problems; the message lists them (file:line: what), the first 50 plus a count.

    Attributes:
        problems: every problem found, not only the ones shown in the message.
    """

    def __init__(self, problems: Sequence[DataProblem] | str, what: str = "dataset", hint: str | None = None) -> None:
        if isinstance(problems, str):  # rebuilt from its message alone (e.g. by a DataLoader worker)
            self.problems = []
            super().__init__(problems)
            return
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{what}: {n} data problem{'s' if n != 1 else ''}"
        tail = f"\n{hint}" if hint else ""
        super().__init__(f"{head}:\n{format_problems(self.problems)}{tail}")


_SKIP_HINT = "Fix them, or set data.skip_bad=true to drop the rows at fault (they are counted and logged)."


# ------------------------------------------------------------------------------------ dataset
def _is_sparse(m: Any) -> bool:
    return hasattr(m, "tocsr") and hasattr(m, "nnz")


def _check_label_values(labels: Any, what: str) -> None:
    values = labels.data if _is_sparse(labels) else labels
    if values.size and (int(values.min()) < NEGATIVE or int(values.max()) > POSITIVE):
        raise ValueError(f"{what}: label values must be {POSITIVE}, {NEGATIVE} or {IGNORE_LABEL}")


class MultiLabelDataset(torch.utils.data.Dataset):
    """Images on disk with multi-label targets in {+1, -1, 0}: the contract every reader fulfils.

    The label matrix is stored compactly: a dense `int8` numpy array, or a scipy CSR matrix of
    `int8` whose implicit zeros mean "not annotated" (Open Images test: 125k x 7.6k labels would
    be 950 MB dense, about 10 MB sparse).

    Args:
        paths: image file of each row.
        labels: [N, K] int8 numpy array or scipy sparse matrix, values +1 / -1 / 0.
        label_names: the vocabulary, seen labels first, then unseen (K names, unique).
        seen_mask: [K] bool, True for labels used in training.
        unseen_mask: [K] bool; default: not seen.
        transform: PIL image -> float tensor [3, H, W]; None gives the image as floats in [0, 1].
        name: reader name for messages.
        split: "train" or "test".
        skipped: problems whose rows were dropped under `skip_bad=True`.
        dropped_without_positive: training rows dropped for having no positive seen label.
        label_ids: dataset-specific ids of the labels (e.g. Open Images MIDs), if any.
        skip_bad: an image that fails to load is skipped: the sample of the next readable row
            takes its place and lists it under `"skipped"` (see `collate_samples`).

    Shapes:
        sample["image"]: [3, H, W] float; sample["target"]: [K] long in {+1, -1, 0}.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Any,
        label_names: Sequence[str],
        seen_mask: Any,
        *,
        unseen_mask: Any | None = None,
        transform: Transform | None = None,
        name: str = "dataset",
        split: str = "test",
        skipped: Sequence[DataProblem] = (),
        dropped_without_positive: int = 0,
        label_ids: Sequence[str] | None = None,
        skip_bad: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.split = split
        self.paths = [str(p) for p in paths]
        names = [str(n) for n in label_names]
        k = len(names)
        check_unique(names, what=name)
        if _is_sparse(labels):
            labels = labels.tocsr().astype(np.int8)
            labels.eliminate_zeros()
        else:
            labels = np.ascontiguousarray(labels, dtype=np.int8)
        if labels.ndim != 2 or labels.shape != (len(self.paths), k):
            raise ValueError(f"{name}: label matrix of shape {labels.shape} does not match {len(self.paths)} images x {k} labels")
        _check_label_values(labels, name)
        seen = np.asarray(seen_mask, dtype=bool).reshape(-1)
        unseen = ~seen if unseen_mask is None else np.asarray(unseen_mask, dtype=bool).reshape(-1)
        if seen.shape != (k,) or unseen.shape != (k,):
            raise ValueError(f"{name}: seen/unseen masks of shapes {seen.shape}/{unseen.shape} do not match {k} labels")
        if np.any(seen & unseen):
            raise ValueError(f"{name}: label {names[int(np.flatnonzero(seen & unseen)[0])]!r} is both seen and unseen")
        self.labels = labels
        self._label_names = names
        self._seen = seen
        self._unseen = unseen
        self.transform = transform
        self.skipped: list[DataProblem] = list(skipped)
        self.dropped_without_positive = int(dropped_without_positive)
        self.label_ids = list(label_ids) if label_ids is not None else None
        self.skip_bad = bool(skip_bad)

    # -- vocabulary ------------------------------------------------------------------------
    @property
    def label_names(self) -> list[str]:
        return list(self._label_names)

    @property
    def seen_mask(self) -> torch.Tensor:
        """BoolTensor [K]: labels used in training."""
        return torch.from_numpy(self._seen.copy())

    @property
    def unseen_mask(self) -> torch.Tensor:
        """BoolTensor [K]: labels held out of training."""
        return torch.from_numpy(self._unseen.copy())

    @property
    def num_labels(self) -> int:
        return len(self._label_names)

    # -- labels ----------------------------------------------------------------------------
    @property
    def is_sparse(self) -> bool:
        return _is_sparse(self.labels)

    def label_row(self, i: int) -> np.ndarray:
        """Row `i` of the label matrix as a dense int8 array [K]."""
        i = self._check_index(i)
        if self.is_sparse:
            return self.labels[i].toarray().reshape(-1).astype(np.int8)
        return np.array(self.labels[i], dtype=np.int8)

    def dense_labels(self) -> np.ndarray:
        """The whole label matrix as dense int8 [N, K] (mind the memory on large data sets)."""
        return self.labels.toarray().astype(np.int8) if self.is_sparse else self.labels.copy()

    @property
    def targets(self) -> torch.Tensor:
        """The whole label matrix as a LongTensor [N, K] (dense: small data sets only)."""
        return torch.from_numpy(self.dense_labels().astype(np.int64))

    # -- images ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    def _check_index(self, i: int) -> int:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name} {self.split}: index {i} out of range for {len(self)} images")
        return i % len(self)

    def image_path(self, i: int) -> str:
        """The image file of row `i`."""
        return self.paths[self._check_index(i)]

    def load_image(self, i: int) -> Image.Image:
        """Row `i`'s image as an RGB PIL image.

        Raises:
            ImageReadError: the file is missing or cannot be decoded (the message names it and why).
        """
        return open_rgb(self.image_path(i))

    def _sample(self, i: int, img: Image.Image) -> dict[str, Any]:
        if self.transform is not None:
            image = self.transform(img)
        else:
            image = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(_PIXEL_MAX)  # [H, W, 3] -> [3, H, W]
        target = torch.from_numpy(self.label_row(i).astype(np.int64))
        return {"image": image, "target": target, "index": i}

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = self._check_index(i)
        if not self.skip_bad:
            try:
                return self._sample(i, self.load_image(i))
            except ImageReadError as e:
                problem = DataProblem(e.path, None, e.reason)
                raise DataError([problem], what=f"{self.name} ({self.split})", hint=_SKIP_HINT) from e
        skipped: list[int] = []
        for j in (*range(i, len(self)), *range(i)):  # the next readable row takes a bad one's place
            try:
                img = self.load_image(j)
            except ImageReadError as e:
                _logger.warning("skip_bad: skipping %s", e)
                skipped.append(j)
                continue
            return {**self._sample(j, img), SKIPPED_KEY: skipped}
        raise DataError(
            [DataProblem(self.image_path(j), None, "unreadable") for j in skipped], what=f"{self.name} ({self.split}): no readable image"
        )

    def __repr__(self) -> str:
        return (
            f"MultiLabelDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, labels={self.num_labels} "
            f"({int(self._seen.sum())} seen, {int(self._unseen.sum())} unseen), "
            f"{'sparse' if self.is_sparse else 'dense'}, skipped={len(self.skipped)})"
        )


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch (torch's default collate), with `"skipped"` as one flat list.

    Under `skip_bad` a sample lists the rows skipped to reach it (see `MultiLabelDataset`); the
    batch then carries every skipped row index under `"skipped"`, so the trainer can count them.
    """
    from torch.utils.data import default_collate

    if not samples or SKIPPED_KEY not in samples[0]:
        return default_collate(list(samples))
    skipped = [j for s in samples for j in s[SKIPPED_KEY]]
    batch = default_collate([{k: v for k, v in s.items() if k != SKIPPED_KEY} for s in samples])
    batch[SKIPPED_KEY] = skipped
    return batch


@dataclass(frozen=True)
class LabelSplit:
    """A dataset's vocabulary and its split, read once: the names and the seen / unseen masks.

    Shapes:
        seen, unseen: bool [K], aligned with `names`.
    """

    names: list[str]
    seen: np.ndarray
    unseen: np.ndarray

    @classmethod
    def of(cls, dataset: Any) -> "LabelSplit":
        """From anything with `label_names`, `seen_mask` and `unseen_mask` (the dataset contract)."""
        return cls(
            list(dataset.label_names),
            np.asarray(dataset.seen_mask, dtype=bool),
            np.asarray(dataset.unseen_mask, dtype=bool),
        )

    @property
    def seen_names(self) -> list[str]:
        return [n for n, s in zip(self.names, self.seen) if s]

    @property
    def unseen_names(self) -> list[str]:
        return [n for n, u in zip(self.names, self.unseen) if u]


class DatasetPart(torch.utils.data.Dataset):
    """Some rows of a dataset, as a dataset of the same contract (`label_names`, the masks,
    `image_path(i)`); a sample's `index` is its position in the part.

    Rows skipped while loading (`data.skip_bad`) stay rows of the whole dataset (`log_skipped`
    names them there); `skipped` is the whole dataset's rows dropped before use, for its counts.
    Used for the held-out part of a training listing (`c2srt.calibration.split_dataset`).
    """

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size and not (0 <= int(self.indices.min()) and int(self.indices.max()) < len(dataset)):
            raise ValueError(f"DatasetPart: rows out of range for {len(dataset)} images")

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = dict(self.dataset[int(self.indices[i])])
        sample["index"] = int(i)
        return sample

    @property
    def label_names(self) -> list[str]:
        return list(self.dataset.label_names)

    @property
    def seen_mask(self) -> torch.Tensor:
        return torch.as_tensor(self.dataset.seen_mask, dtype=torch.bool)

    @property
    def unseen_mask(self) -> torch.Tensor:
        return torch.as_tensor(self.dataset.unseen_mask, dtype=torch.bool)

    @property
    def skipped(self) -> list[Any]:
        return list(getattr(self.dataset, "skipped", ()))

    def image_path(self, i: int) -> str:
        return str(self.dataset.image_path(int(self.indices[i])))

    def __repr__(self) -> str:
        return f"DatasetPart({self.dataset!r}, {len(self)} of {len(self.dataset)} images)"


def with_transform(dataset: Any, transform: Transform | None) -> Any:
    """The same dataset (rows, labels, listing: nothing is read again) with another image transform,
    e.g. the evaluation transform for the held-out part of a training listing.

    The readers keep their transform as `transform` (the dataset contract); a shallow copy shares
    everything else.

    Raises:
        TypeError: `dataset` has no `transform` attribute.
    """
    import copy

    if isinstance(dataset, DatasetPart):
        return DatasetPart(with_transform(dataset.dataset, transform), dataset.indices)
    if not hasattr(dataset, "transform"):
        raise TypeError(f"{type(dataset).__name__} keeps no `transform` attribute: build it again with the transform instead")
    out = copy.copy(dataset)
    out.transform = transform
    return out


def log_skipped(dataset: Any, rows: Iterable[int], split: str) -> None:
    """The one warning that lists the images skipped while loading (`data.skip_bad`), at most 10 named.

    `rows` are rows of the whole dataset (of a `DatasetPart`'s dataset, for a part).
    """
    while isinstance(dataset, DatasetPart):
        dataset = dataset.dataset
    names = [str(dataset.image_path(i)) for i in sorted(rows)]
    if names:
        _logger.warning(
            "data.skip_bad: %d unreadable %s image(s) skipped while loading: %s%s",
            len(names), split, ", ".join(names[:10]), ", ..." if len(names) > 10 else "",
        )  # fmt: skip


# --------------------------------------------------------------------------- reader helpers
def select_rows(labels: Any, keep: np.ndarray) -> Any:
    """The rows of a dense or sparse label matrix where `keep` is True."""
    idx = np.flatnonzero(keep)
    return labels[idx] if _is_sparse(labels) else labels[idx]


def positive_counts(labels: Any, columns: np.ndarray) -> np.ndarray:
    """Per row, the number of +1 entries among the given columns (bool mask [K])."""
    if _is_sparse(labels):
        pos = labels.tocsr().copy()
        pos.data = (pos.data == POSITIVE).astype(np.int32)
        return np.asarray(pos[:, np.flatnonzero(columns)].sum(axis=1)).reshape(-1)
    return (labels[:, columns] == POSITIVE).sum(axis=1)


def _blank_columns(labels: Any, columns: np.ndarray) -> Any:
    """Set the given columns (bool mask [K]) to IGNORE_LABEL."""
    if _is_sparse(labels):
        labels = labels.tocsr().copy()
        hit = columns[labels.indices]
        labels.data[hit] = IGNORE_LABEL
        labels.eliminate_zeros()
        return labels
    labels = labels.copy()
    labels[:, columns] = IGNORE_LABEL
    return labels


RowSource = tuple[str, int]  # (listing file, 1-based line) a row was read from


def _image_problem(path: str, reason: str, source: RowSource | None) -> DataProblem:
    """A problem with an image, at its listing line when the row came from one."""
    if source is None:
        return DataProblem(path, None, reason)
    return DataProblem(source[0], source[1], f"{path}: {reason}")


def missing_files(
    paths: Sequence[str], rows: Iterable[int], sources: Sequence[RowSource] | None = None
) -> list[tuple[int, DataProblem]]:
    """(row, problem) for every listed image that is not a file."""
    return [
        (i, _image_problem(paths[i], "image file not found", sources[i] if sources else None))
        for i in rows
        if not os.path.isfile(paths[i])
    ]


def unreadable_images(
    paths: Sequence[str],
    rows: Iterable[int],
    sources: Sequence[RowSource] | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> list[tuple[int, DataProblem]]:
    """(row, problem) for every listed image that cannot be decoded (see `data/check.py`; cached)."""
    rows = list(rows)
    reasons = check_image_files([paths[i] for i in rows], workers=workers, progress=progress)
    return [
        (i, _image_problem(paths[i], reason, sources[i] if sources else None))
        for i, reason in zip(rows, reasons)
        if reason is not None
    ]


def check_images(
    dataset: Any, *, workers: int | None = None, progress: bool = False, cache: bool = True
) -> list[DataProblem]:
    """Decode every image of a dataset once and report the ones that cannot be read.

    Args:
        dataset: anything with `__len__` and `image_path(i)`.
        workers: worker processes (default: the CPUs available).
        progress: show a progress bar.
        cache: use (and update) the cached verdicts.

    Returns:
        One `DataProblem` (file and reason) per unreadable image; empty when all are fine.
    """
    paths = [str(dataset.image_path(i)) for i in range(len(dataset))]
    reasons = check_image_files(paths, workers=workers, progress=progress, cache=cache)
    return [DataProblem(p, None, r) for p, r in zip(paths, reasons) if r is not None]


def finalize_dataset(
    *,
    name: str,
    split: str,
    paths: Sequence[str],
    labels: Any,
    label_names: Sequence[str],
    seen_mask: Any,
    problems: Sequence[tuple[int | None, DataProblem]] = (),
    transform: Transform | None = None,
    skip_bad: bool = False,
    check_files: bool = True,
    check_images: bool = False,
    sources: Sequence[RowSource] | None = None,
    label_ids: Sequence[str] | None = None,
) -> MultiLabelDataset:
    """Apply the bad-data policy and the training filter, then build the dataset.

    Readers call this last. Steps: check that every image file exists (optional) and decodes
    (optional, cached); raise a `DataError` listing all problems, or with `skip_bad` drop the rows
    at fault; for the training split, blank the unseen columns (they are unknown at training time)
    and drop the images without a positive seen label, as the published protocols do.

    Args:
        name, split: for messages and the dataset's attributes.
        paths, labels, label_names, seen_mask, label_ids, transform: see `MultiLabelDataset`.
        problems: (row, problem) pairs found by the reader; row None means no row to drop (the
            problem is fatal unless `skip_bad`, and then only logged).
        skip_bad: drop the rows at fault instead of raising; later load failures are skipped too.
        check_files: check that each image file exists (one `stat` per image).
        check_images: decode every image once (parallel, verdicts cached per file: `data/check.py`).
        sources: (listing file, line) of each row, so that image problems name the listing line.

    Raises:
        DataError: problems were found and `skip_bad` is False.
    """
    if split not in SPLITS:
        raise ValueError(f"{name}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    found = list(problems)
    n = len(paths)
    bad = np.zeros(n, dtype=bool)
    for row, _ in found:
        if row is not None:
            bad[row] = True
    if check_files:
        found.extend(missing_files(paths, np.flatnonzero(~bad), sources))
        for row, _ in found:
            if row is not None:
                bad[row] = True
    if check_images:
        found.extend(unreadable_images(paths, np.flatnonzero(~bad), sources))
    found.sort(key=lambda rp: (rp[1].file, rp[1].line or 0))  # in file order, as a person fixes them
    if found and not skip_bad:
        raise DataError([p for _, p in found], what=f"{name} ({split})", hint=_SKIP_HINT)
    for row, _ in found:
        if row is not None:
            bad[row] = True
    if found:
        _logger.warning(
            "%s (%s): skip_bad: %d problem(s), the rows at fault dropped; first: %s", name, split, len(found), found[0][1]
        )
    seen = np.asarray(seen_mask, dtype=bool)
    keep = ~bad
    dropped = 0
    if split == "train":
        labels = _blank_columns(labels, ~seen)
        no_positive = (positive_counts(labels, seen) == 0) & keep
        dropped = int(no_positive.sum())
        keep &= ~no_positive
        if dropped:
            _logger.info("%s (train): %d image(s) without a positive seen label dropped", name, dropped)
    if not keep.all():
        labels = select_rows(labels, keep)
        paths = [p for p, k in zip(paths, keep) if k]
    if len(paths) == 0:
        raise ValueError(
            f"{name} ({split}): no images left (read {n}, dropped {int(bad.sum())} bad and {dropped} without a positive)"
        )
    ds = MultiLabelDataset(
        paths,
        labels,
        label_names,
        seen,
        transform=transform,
        name=name,
        split=split,
        skipped=[p for _, p in found],
        dropped_without_positive=dropped,
        label_ids=label_ids,
        skip_bad=skip_bad,
    )
    _logger.info("%r", ds)
    return ds


def read_lines(path: str | os.PathLike[str], what: str = "file") -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of each non-blank line of a UTF-8 text file.

    Raises:
        FileNotFoundError: naming the file and what it should hold.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if text:
                yield lineno, text


# ----------------------------------------------------------------------------------- registry
# `DATASETS` (c2srt.registry): readers register themselves when their module is imported, and
# `c2srt.data` imports them all; an application's dataset is a lazy entry (`Registry.add_lazy`).
_PIPELINE_ARGS = ("split", "transform")  # given by the caller of build_dataset
_CFG_FLAGS = ("skip_bad", "check_images")  # DataCfg switches passed to the readers that take them
_CFG_ARGS = ("root", *_CFG_FLAGS)  # given from DataCfg fields, not from options


def register_dataset(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a dataset factory `(split, *, transform, [root], [skip_bad], [check_images], **options)`.

    Example:
        >>> @register_dataset("my_data")
        ... def build_my_data(split, *, root, transform=None, skip_bad=False, size=10): ...
    """
    return DATASETS.register(name)


def list_datasets(pattern: str = "*") -> list[str]:
    """Names of the registered datasets (wildcards allowed)."""
    return DATASETS.list(pattern)


def build_dataset(cfg: DataCfg, split: str, transform: Transform | None = None) -> Any:
    """Build a split of the dataset `cfg.name` through the registry.

    Args:
        cfg: `DataCfg`: `name`, `root`, `skip_bad`, `check_images` and `options` (keyword
            arguments of the reader).
        split: "train" or "test".
        transform: PIL image -> float tensor [3, H, W]; None gives floats in [0, 1].

    Returns:
        A dataset yielding `{"image", "target", "index"}` with `label_names`, `seen_mask`,
        `unseen_mask` and `image_path(i)` (a `MultiLabelDataset` for the file readers).

    Raises:
        ValueError: unknown dataset name (listing the valid ones), unknown split, or an option the
            reader does not take (naming it and listing the valid ones); `DataError` for bad data.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if cfg.name not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.name!r}; valid names: {', '.join(list_datasets())}")
    factory = DATASETS.get(cfg.name)
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    options = dict(cfg.options or {})
    valid = [n for n in named if n not in _PIPELINE_ARGS + _CFG_ARGS]
    for key in options:
        if key in _CFG_ARGS:
            raise ValueError(f"data.options.{key}: set data.{key} instead")
        if key in _PIPELINE_ARGS or (key not in named and not takes_any):
            raise ValueError(
                f"dataset {cfg.name!r}: unknown option data.options.{key}; valid options: {', '.join(valid) or '(none)'}"
            )
    kwargs: dict[str, Any] = dict(options)
    kwargs["transform"] = transform
    if "root" in params:
        if cfg.root is not None:
            kwargs["root"] = os.path.expanduser(cfg.root)
        elif params["root"].default is inspect.Parameter.empty:
            raise ValueError(f"data.root: dataset {cfg.name!r} needs the folder holding its files")
    for key in _CFG_FLAGS:
        if key in params:
            kwargs[key] = getattr(cfg, key)
    return factory(split, **kwargs)


def check_dataset(cfg: Any, split: str) -> tuple[int | None, list[Any]]:
    """Read a split of `cfg.data` with every image decoded once; return (images, problems).

    The problems are those a training run would stop on (listing faults, missing and unreadable
    images, each with its file, line and reason), all of them, whatever `data.skip_bad` says.

    Args:
        cfg: a `Cfg` (its `data` section is used).
        split: "train" or "test".

    Returns:
        (number of images, []) when the split is clean, else (None, the `DataProblem`s).

    Raises:
        ValueError, FileNotFoundError: faults that stop reading altogether (a missing label file,
            an unknown dataset name), as `build_dataset` raises them.
    """
    data = dataclasses.replace(cfg.data, skip_bad=False, check_images=True)
    try:
        dataset = build_dataset(data, split, None)
    except DataError as e:
        return None, list(e.problems)
    return len(dataset), []
