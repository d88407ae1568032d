"""Evaluation protocols (NUS-WIDE, Open Images, generic) with a bounded-memory streaming evaluator.

A model produces scores a batch of rows at a time; `StreamingEvaluator.update` takes each chunk
and `compute` returns every figure, exactly as the in-memory functions of `c2srt.metrics` would.
This module knows scores and labels only (numpy, no torch): running a model over a dataset is
`c2srt.evaluate`'s, which re-exports everything here.

What is kept, and why (Open Images test is 125,436 x 7,586, 3.8 GB of float32 scores):
- Top-k P/R/F1 need each row only once: the true-positive counts are accumulated per chunk and the
  scores are then dropped.
- AP ranks, per column, only the *annotated* entries (label 0 is left out), so only those are
  spilled: (row int32, column int32, label int8, score) appended to files in a temporary folder.
  Open Images carries ~10 annotations per image, so this is ~1% of the matrix; NUS-WIDE is fully
  annotated and spills everything (~13 bytes an entry, on disk, not in memory). The spill is
  split into a few files by column range (buckets), so a column group reads only its bucket.
- `compute` reads the spill back in bounded slices (plain reads, not `np.memmap`, whose mapped
  pages would count as resident memory), in column groups holding at most `max_entries` entries,
  sorts each group by (column, -score, row) and computes AP column by column with the same
  kernel as `c2srt.metrics.average_precision`.
- Per-block row filters (Open Images keeps rows with a positive in the block) and per-column
  counts are known per chunk, so they are accumulated on the fly too.

Memory: O(chunk + max_entries + N) where N is the number of rows. The row-pooled compatibility
variant needs the annotated entries of a whole block in memory (~1.3 M entries for Open Images).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .choices import Protocol
from .constants import IGNORE_LABEL, NUS_WIDE_TOPK, OPEN_IMAGES_TOPK, POSITIVE
from .metrics import (
    EmptyColumn,
    ap_of_ranking,
    as_numpy,
    check_k,
    check_labels,
    check_scores,
    nan_mean,
    prf_from_counts,
    ranked_hits,
    resolve_empty,
    topk_true_positives,
    weighted_mean,
)
from .registry import parse_enum

_logger = logging.getLogger(__name__)


@functools.cache  # once per process: a run evaluates after every epoch
def _warn_undefined_topk(block: str, n_cols: int) -> None:
    _logger.warning("block %s has %d columns: top-K for K > %d is not defined (reported as NaN)", block, n_cols, n_cols)

__all__ = [
    "Block",
    "BlockwiseEvaluator",
    "Protocol",
    "StreamingEvaluator",
    "block_columns",
    "evaluate",
    "format_table",
]

# Label-space sizes of the published splits (seen columns first, then unseen).
NUS_WIDE_NUM_SEEN = 925
NUS_WIDE_NUM_UNSEEN = 81
OPEN_IMAGES_NUM_SEEN = 7186
OPEN_IMAGES_NUM_UNSEEN = 400

DEFAULT_MAX_ENTRIES = 1 << 22  # annotated entries sorted at once in `compute` (~100 MB of work arrays)
DEFAULT_CHUNK_ROWS = 2048  # rows per update in `evaluate` (in-memory convenience)
_SCAN_ENTRIES = 1 << 20  # spill entries read per slice (~17 MB)
_NUM_BUCKETS = 16  # the spill is split by column range, so a column group reads only its bucket
_MAX_ROWS = np.iinfo(np.int32).max  # rows are spilled as int32


class Block(str, enum.Enum):
    """Column blocks that figures are reported for."""

    ZSL = "zsl"  # unseen labels only: scored by a pass over the unseen vocabulary alone
    GZSL = "gzsl"  # all labels: a pass over the whole vocabulary
    SEEN = "seen"  # seen labels only: a pass over the seen vocabulary alone


@dataclasses.dataclass(frozen=True)
class _Spec:
    blocks: tuple[Block, ...]
    topk: tuple[int, ...]
    row_filter: bool  # keep only rows with a positive in the block
    annotated_columns_only: bool  # mAP over columns annotated in the kept rows (else all block columns)
    sizes: tuple[int, int] | None  # (seen, unseen) column counts assumed when no mask is given


_SPECS = {
    Protocol.NUS_WIDE: _Spec((Block.ZSL, Block.GZSL), NUS_WIDE_TOPK, False, False, (NUS_WIDE_NUM_SEEN, NUS_WIDE_NUM_UNSEEN)),
    Protocol.OPEN_IMAGES: _Spec(
        (Block.ZSL, Block.GZSL, Block.SEEN), OPEN_IMAGES_TOPK, True, True, (OPEN_IMAGES_NUM_SEEN, OPEN_IMAGES_NUM_UNSEEN)
    ),
    Protocol.GENERIC: _Spec((Block.ZSL, Block.GZSL, Block.SEEN), NUS_WIDE_TOPK, False, False, None),
}


def _resolve_protocol(protocol: str | Protocol) -> Protocol:
    return parse_enum(Protocol, protocol, "protocol")


def _as_mask(mask: Any, name: str) -> np.ndarray:
    m = as_numpy(mask, name)
    if m.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D boolean mask [C], got shape {tuple(m.shape)}")
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise ValueError(f"{name}: expected booleans (or 0/1), got dtype {m.dtype}")
        m = m.astype(bool)
    return m


class _BlockState:
    """Columns of one block and what is accumulated for it per chunk."""

    def __init__(self, block: Block, cols: np.ndarray, n_total_cols: int, ks: tuple[int, ...]) -> None:
        self.block = block
        self.cols = cols  # sorted column indices
        contiguous = cols.size > 0 and cols[-1] - cols[0] + 1 == cols.size
        self.index: slice | np.ndarray = slice(int(cols[0]), int(cols[-1]) + 1) if contiguous else cols
        self.ks = tuple(k for k in ks if k <= cols.size)
        self.tp = {k: 0 for k in self.ks}
        self.n_rows = 0
        self.n_pos = 0
        self.kept: list[np.ndarray] = []  # per chunk, bool [n]; only with a row filter
        self.col_nnz = np.zeros(cols.size, dtype=np.int64)  # annotated entries in kept rows
        self.col_npos = np.zeros(cols.size, dtype=np.int64)  # positives in kept rows


class StreamingEvaluator:
    """Exact evaluation of a score matrix fed row-chunk by row-chunk, in bounded memory.

    Blocks and their figures:
    - `nus_wide`: blocks zsl (unseen columns) and gzsl (all columns), every row, mAP over all block
      columns (`empty` decides a column without positive), micro P/R/F1 at K = 3, 5.
    - `generic`: as `nus_wide` for any masks, plus a seen block.
    - `open_images`: blocks zsl, gzsl, seen; each block keeps only rows with a positive among its
      columns; mAP over the block columns annotated (+1 or -1) in the kept rows; K = 10, 20.
    Every block reports `mAP` (per-class AP), `mAP_weighted` (per-class AP weighted by positives),
    `P@K`, `R@K`, `F1@K`, `n_images` and `n_classes` (columns in the mAP); with `row_pooled=True`
    also `mAP_row_pooled` (the BiAM/LESA compatibility variant, see
    `c2srt.metrics.row_pooled_average_precision`). Keys are `"<block>/<figure>"`, e.g. `zsl/F1@3`.
    Fractions in [0, 1]. After `compute`, `per_label_ap` holds each block's per-class AP (one value
    per block column, in column order; NaN for a column not counted): the values `mAP` averages.

    Args:
        protocol: "nus_wide", "open_images" or "generic".
        seen_mask: bool [C]; default: the complement of `unseen_mask`, or the published sizes
            (925 + 81, 7186 + 400; seen columns first) when neither mask is given.
        unseen_mask: bool [C]; default: the complement of `seen_mask`.
        topk: the K of the top-K figures; default: the protocol's.
        empty: AP of a column without positive: "zero" (published) or "skip".
        row_pooled: also compute the row-pooled compatibility mAP.
        blocks: blocks to report; default: the protocol's. A block without columns is skipped.
        workdir: folder for the temporary spill (a fresh sub-folder is made and removed).
        max_entries: annotated entries sorted at once by `compute` (memory bound).

    Raises:
        ValueError: unknown protocol/block/empty, bad masks, bad K.

    Example:
        >>> ev = StreamingEvaluator("generic", seen_mask=[True, True, False], topk=(1,))
        >>> ev.update([[0.9, 0.1, 0.3]], [[1, -1, 1]])
        >>> round(ev.compute()["gzsl/P@1"], 2)
        1.0
    """

    def __init__(
        self,
        protocol: str | Protocol = Protocol.GENERIC,
        seen_mask: Any = None,
        unseen_mask: Any = None,
        *,
        topk: tuple[int, ...] | list[int] | None = None,
        empty: str | EmptyColumn = EmptyColumn.ZERO,
        row_pooled: bool = False,
        blocks: tuple[str | Block, ...] | None = None,
        workdir: str | Path | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.protocol = _resolve_protocol(protocol)
        self._spec = _SPECS[self.protocol]
        self.empty = resolve_empty(empty)
        self.row_pooled = bool(row_pooled)
        ks = tuple(self._spec.topk if topk is None else topk)
        if not ks or len(set(ks)) != len(ks):
            raise ValueError(f"topk: expected distinct values, got {ks!r}")
        self.topk = tuple(check_k(k, np.iinfo(np.int64).max, "topk") for k in ks)
        try:
            self.blocks = tuple(Block(b) for b in (self._spec.blocks if blocks is None else blocks))
        except ValueError:
            valid = ", ".join(repr(b.value) for b in Block)
            raise ValueError(f"blocks={blocks!r}: choose among {valid}") from None
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = int(max_entries)
        self._seen_in = None if seen_mask is None else _as_mask(seen_mask, "seen_mask")
        self._unseen_in = None if unseen_mask is None else _as_mask(unseen_mask, "unseen_mask")
        self._n_cols: int | None = None
        self._states: list[_BlockState] = []
        self._n_rows = 0
        self._n_chunks = 0
        self._nnz = 0
        self._score_dtype: np.dtype | None = None
        self._results: dict[str, float] | None = None
        self._per_label_ap: dict[str, np.ndarray] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="c2srt-eval-", dir=None if workdir is None else str(workdir)))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        self._files: list[BinaryIO] = []
        self._bucket_nnz: list[int] = []
        self._record: np.dtype | None = None
        self._closed = False
        if self._seen_in is not None or self._unseen_in is not None:
            n = (self._seen_in if self._seen_in is not None else self._unseen_in).size  # type: ignore[union-attr]
            self._setup(n)

    # ------------------------------------------------------------------ set-up
    def _masks(self, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        seen, unseen = self._seen_in, self._unseen_in
        if seen is None and unseen is None:
            if self._spec.sizes is not None:
                n_seen, n_unseen = self._spec.sizes
                if n_cols != n_seen + n_unseen:
                    raise ValueError(
                        f"protocol {self.protocol.value!r} without masks expects {n_seen + n_unseen} columns "
                        f"({n_seen} seen then {n_unseen} unseen); got {n_cols}. Pass seen_mask/unseen_mask."
                    )
                seen = np.arange(n_cols) < n_seen
            else:
                seen = np.ones(n_cols, dtype=bool)  # nothing declared unseen
            unseen = ~seen
        elif seen is None:
            seen = ~unseen  # type: ignore[operator]
        elif unseen is None:
            unseen = ~seen
        if seen.size != n_cols or unseen.size != n_cols:
            raise ValueError(f"seen_mask has {seen.size} and unseen_mask {unseen.size} entries; the scores have {n_cols} columns")
        if (seen & unseen).any():
            raise ValueError(f"seen_mask and unseen_mask overlap at column {int(np.flatnonzero(seen & unseen)[0])}")
        return seen, unseen

    def _setup(self, n_cols: int) -> None:
        seen, unseen = self._masks(n_cols)
        self.seen_mask, self.unseen_mask = seen, unseen
        cols = {Block.ZSL: np.flatnonzero(unseen), Block.SEEN: np.flatnonzero(seen), Block.GZSL: np.arange(n_cols)}
        for b in self.blocks:
            if cols[b].size == 0:
                _logger.debug("block %s has no column; skipped", b.value)
                continue
            st = _BlockState(b, cols[b], n_cols, self.topk)
            if len(st.ks) < len(self.topk):
                _warn_undefined_topk(b.value, int(cols[b].size))
            self._states.append(st)
        self._n_cols = n_cols
        self._n_buckets = min(_NUM_BUCKETS, n_cols)
        self._bucket_width = -(-n_cols // self._n_buckets)  # ceil

    # ------------------------------------------------------------------ streaming
    def update(self, scores: Any, labels: Any) -> None:
        """Add a chunk of rows.

        Args:
            scores: [n, C] scores (numpy or torch, any float dtype; NaN not allowed).
            labels: [n, C] in {+1, -1, 0}.

        Raises:
            ValueError: shapes that differ from each other or from earlier chunks/masks, bad label
                values, NaN scores, or a score dtype that cannot be stored losslessly.
            RuntimeError: `compute` was already called.
        """
        if self._results is not None or self._closed:
            raise RuntimeError("update() after compute()/close(): make a new StreamingEvaluator")
        where = f"chunk {self._n_chunks}"
        s = check_scores(as_numpy(scores, f"{where} scores"), f"{where} scores")
        y = check_labels(as_numpy(labels, f"{where} labels"), f"{where} labels")
        if s.shape != y.shape:
            raise ValueError(f"{where}: scores {s.shape} and labels {y.shape} must have the same shape [n, C]")
        if self._n_cols is None:
            self._setup(s.shape[1])
        if s.shape[1] != self._n_cols:
            raise ValueError(f"{where}: {s.shape[1]} columns, expected {self._n_cols} (masks / earlier chunks)")
        if self._n_rows + s.shape[0] > _MAX_ROWS:
            raise ValueError(f"{where}: more than {_MAX_ROWS} rows in total are not supported")
        self._spill(s, y)
        positive = y == POSITIVE
        for st in self._states:
            self._update_block(st, s, y, positive)
        self._n_rows += s.shape[0]
        self._n_chunks += 1

    def _spill(self, s: np.ndarray, y: np.ndarray) -> None:
        if self._score_dtype is None:
            self._score_dtype = np.dtype(np.float32 if s.dtype in (np.float16, np.float32) else np.float64)
            self._open_files()
        elif not np.can_cast(s.dtype, self._score_dtype, "safe"):
            raise ValueError(
                f"chunk {self._n_chunks}: scores of dtype {s.dtype} cannot be stored losslessly as {self._score_dtype} "
                "(the dtype of the first chunk); cast every chunk to one dtype"
            )
        r, c = np.nonzero(y)  # row-major: rows ascending, then columns
        assert self._record is not None
        rec = np.empty(r.size, dtype=self._record)
        rec["row"], rec["col"], rec["label"], rec["score"] = r + self._n_rows, c, y[r, c], s[r, c]
        bucket = c // self._bucket_width
        order = np.argsort(bucket, kind="stable")  # keeps row-major order inside each bucket
        bounds = np.searchsorted(bucket[order], np.arange(self._n_buckets + 1))
        for b in range(self._n_buckets):
            if bounds[b] < bounds[b + 1]:
                self._files[b].write(rec[order[bounds[b] : bounds[b + 1]]].tobytes())
                self._bucket_nnz[b] += int(bounds[b + 1] - bounds[b])
        self._nnz += r.size

    def _open_files(self) -> None:
        fields = [("row", "<i4"), ("col", "<i4"), ("label", "i1"), ("score", self._score_dtype)]
        self._record = np.dtype(fields)  # packed: 13 or 17 bytes an entry
        self._bucket_nnz = [0] * self._n_buckets
        self._files = [open(self._bucket_path(b), "wb") for b in range(self._n_buckets)]  # noqa: SIM115 (closed in close)

    def _bucket_path(self, b: int) -> Path:
        return self._dir / f"bucket{b:03d}.bin"

    def _update_block(self, st: _BlockState, s: np.ndarray, y: np.ndarray, positive: np.ndarray) -> None:
        pos = positive[:, st.index]  # [n, C] -> [n, M]
        if self._spec.row_filter:
            keep = pos.any(axis=1)
            st.kept.append(keep)
            rows = np.flatnonzero(keep)
            pos = pos[rows]
            sel = np.ix_(rows, st.index) if isinstance(st.index, np.ndarray) else (rows, st.index)
            sb, yb = s[sel], y[sel]  # [n, C] -> [n_kept, M]
        else:
            sb, yb = s[:, st.index], y[:, st.index]
        for k, tp in topk_true_positives(sb, pos, st.ks).items():
            st.tp[k] += tp
        st.n_rows += sb.shape[0]
        st.n_pos += int(np.count_nonzero(pos))
        st.col_nnz += np.count_nonzero(yb != IGNORE_LABEL, axis=0)
        st.col_npos += np.count_nonzero(pos, axis=0)

    # ------------------------------------------------------------------ compute
    def compute(self) -> dict[str, float]:
        """All figures as a flat dict (see the class docstring); frees the temporary files.

        Calling it again returns the same dict.
        """
        if self._results is not None:
            return dict(self._results)
        try:
            for f in self._files:
                f.close()
            results: dict[str, float] = {}
            for st in self._states:
                results.update(self._block_results(st))
        finally:
            self.close()
        self._results = results
        return dict(results)

    def _gather(self, buckets: list[int], col_lookup: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
        """Spilled records of `buckets` whose column is selected and whose row is kept (bucket by bucket, row-major)."""
        rec = self._record if self._record is not None else np.dtype([("row", "<i4"), ("col", "<i4"), ("label", "i1"), ("score", "<f8")])
        parts: list[np.ndarray] = []
        for b in buckets:
            n = self._bucket_nnz[b] if self._bucket_nnz else 0
            for a in range(0, n, _SCAN_ENTRIES):
                block = np.fromfile(self._bucket_path(b), dtype=rec, count=min(_SCAN_ENTRIES, n - a), offset=a * rec.itemsize)
                sel = col_lookup[block["col"]]
                if kept is not None:
                    sel &= kept[block["row"]]
                parts.append(block[sel])
        return np.concatenate(parts) if parts else np.empty(0, dtype=rec)

    def _column_groups(self, cols: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
        """Split `cols` (in order) into groups of at most `max_entries` entries (a bigger column stays alone)."""
        groups: list[np.ndarray] = []
        start, total = 0, 0
        for i, n in enumerate(counts.tolist()):
            if total + n > self.max_entries and i > start:
                groups.append(cols[start:i])
                start, total = i, 0
            total += n
        if start < cols.size:
            groups.append(cols[start:])
        return groups

    def _per_class_ap(self, st: _BlockState, kept: np.ndarray | None) -> np.ndarray:
        """Raw per-class AP of the block columns: NaN where the column has no positive in the kept rows."""
        ap = np.full(st.cols.size, np.nan)
        need = np.flatnonzero(st.col_npos > 0)  # positions in st.cols
        lookup = np.zeros(self._n_cols or 0, dtype=bool)
        bucket_of = st.cols[need] // self._bucket_width
        groups = [
            (int(b), g)
            for b in np.unique(bucket_of)
            for g in self._column_groups(need[bucket_of == b], st.col_nnz[need[bucket_of == b]])
        ]
        for bucket, group in groups:
            lookup[:] = False
            lookup[st.cols[group]] = True
            e = self._gather([bucket], lookup, kept)
            order = np.lexsort((e["row"], -e["score"], e["col"]))  # by column, then -score, then row
            cols_sorted = e["col"][order]
            hits = e["label"][order] == POSITIVE
            lo = np.searchsorted(cols_sorted, st.cols[group], side="left")
            hi = np.searchsorted(cols_sorted, st.cols[group], side="right")
            for pos_in_block, a, b in zip(group.tolist(), lo.tolist(), hi.tolist()):
                ap[pos_in_block] = ap_of_ranking(hits[a:b])
        return ap

    def _row_pooled_ap(self, st: _BlockState, kept: np.ndarray | None) -> np.ndarray:
        """Raw row-pooled AP (NaN where the pool has no positive) of the block columns."""
        lookup = np.zeros(self._n_cols or 0, dtype=bool)
        lookup[st.cols] = True
        buckets = sorted({int(b) for b in np.unique(st.cols // self._bucket_width)})
        e = self._gather(buckets, lookup, kept)  # the whole block
        e = e[np.lexsort((e["col"], e["row"]))]  # row-major, as in the score matrix
        ap = np.full(st.cols.size, np.nan)
        if e.size == 0:
            return ap
        _, starts = np.unique(e["row"], return_index=True)
        indptr = np.append(starts, e.size)  # CSR over the rows present
        local_row = np.repeat(np.arange(starts.size), np.diff(indptr))  # entry -> local row
        by_col = np.argsort(e["col"], kind="stable")  # entries of a column stay in row order
        cols_sorted = e["col"][by_col]
        lo = np.searchsorted(cols_sorted, st.cols, side="left")
        hi = np.searchsorted(cols_sorted, st.cols, side="right")
        for j, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
            if a == b:
                continue
            rows = local_row[by_col[a:b]]  # ascending
            begin, lens = indptr[rows], indptr[rows + 1] - indptr[rows]
            idx = np.repeat(begin - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())  # row-major pool
            ap[j] = ap_of_ranking(ranked_hits(e["score"][idx], e["label"][idx]))
        return ap

    def _finish_ap(self, raw: np.ndarray, counted: np.ndarray) -> np.ndarray:
        """Apply the `empty` rule to the counted columns; the others are NaN."""
        ap = np.where(counted, raw, np.nan)
        if self.empty is EmptyColumn.ZERO:
            ap = np.where(counted & np.isnan(raw), 0.0, ap)
        return ap

    def _block_results(self, st: _BlockState) -> dict[str, float]:
        kept = np.concatenate(st.kept) if self._spec.row_filter and st.kept else None
        if self._spec.row_filter and kept is None:
            kept = np.zeros(0, dtype=bool)
        counted = st.col_nnz > 0 if self._spec.annotated_columns_only else np.ones(st.cols.size, dtype=bool)
        raw = self._per_class_ap(st, kept)
        ap = self._finish_ap(raw, counted)
        name = st.block.value
        self._per_label_ap[name] = ap
        out: dict[str, float] = {
            f"{name}/mAP": nan_mean(ap),
            f"{name}/mAP_weighted": weighted_mean(np.nan_to_num(raw), np.where(counted, st.col_npos, 0)),
        }
        if self.row_pooled:
            out[f"{name}/mAP_row_pooled"] = nan_mean(self._finish_ap(self._row_pooled_ap(st, kept), counted))
        for k in self.topk:
            if k in st.tp:
                p, r, f1 = prf_from_counts(st.tp[k], st.n_rows, k, st.n_pos)
            else:
                p = r = f1 = float("nan")
            out.update({f"{name}/P@{k}": p, f"{name}/R@{k}": r, f"{name}/F1@{k}": f1})
        out[f"{name}/n_images"] = st.n_rows
        out[f"{name}/n_classes"] = int(np.count_nonzero(~np.isnan(ap)))
        return out

    # ------------------------------------------------------------------ clean-up
    def close(self) -> None:
        """Close and delete the temporary spill (called by `compute`; safe to call twice)."""
        for f in self._files:
            f.close()
        self._files = []
        self._closed = True
        self._finalizer()

    def __enter__(self) -> StreamingEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def per_label_ap(self) -> dict[str, np.ndarray]:
        """Block name -> AP of each block column (float64 [C_b], NaN where not counted); after `compute`."""
        if self._results is None:
            raise RuntimeError("per_label_ap is known after compute()")
        return {k: v.copy() for k, v in self._per_label_ap.items()}

    @property
    def n_annotated(self) -> int:
        """Annotated (+1/-1) entries spilled so far."""
        return self._nnz

    @property
    def workdir(self) -> Path:
        """The temporary folder of the spill (removed by `compute`/`close`)."""
        return self._dir


def block_columns(
    protocol: str | Protocol, seen_mask: Any, unseen_mask: Any = None
) -> dict[Block, np.ndarray]:
    """The label columns of each block the protocol reports (ZSL: unseen, GZSL: all, seen: seen).

    Blocks without a column are left out. Masks as in `StreamingEvaluator` (unseen defaults to
    the complement of seen).
    """
    spec = _SPECS[_resolve_protocol(protocol)]
    seen = _as_mask(seen_mask, "seen_mask")
    unseen = ~seen if unseen_mask is None else _as_mask(unseen_mask, "unseen_mask")
    if seen.shape != unseen.shape:
        raise ValueError(f"seen_mask has {seen.size} and unseen_mask {unseen.size} entries")
    cols = {Block.ZSL: np.flatnonzero(unseen), Block.GZSL: np.arange(seen.size), Block.SEEN: np.flatnonzero(seen)}
    return {b: cols[b] for b in spec.blocks if cols[b].size}


class BlockwiseEvaluator:
    """Each block evaluated from its own scores: those of a pass over the block's labels alone.

    MKT and SigRL score ZSL with the unseen label embeddings alone, so every normalisation across
    labels (MKT's L2 fusion) runs over the unseen labels; GZSL is a pass over all labels. One
    `StreamingEvaluator` per block, on the block's columns, computes the block's figures exactly
    as `StreamingEvaluator` does (same keys, e.g. `zsl/mAP`).

    Args:
        protocol, topk, empty, row_pooled, workdir, max_entries: as `StreamingEvaluator`.
        seen_mask: bool [C]; unseen_mask: bool [C] (default: not seen).

    Example:
        >>> ev = BlockwiseEvaluator("generic", [True, True, False], topk=(1,))
        >>> ev.update({"zsl": [[0.3]], "gzsl": [[0.9, 0.1, 0.3]], "seen": [[0.9, 0.1]]}, [[1, -1, 1]])
        >>> round(ev.compute()["zsl/mAP"], 2)
        1.0
    """

    def __init__(
        self,
        protocol: str | Protocol,
        seen_mask: Any,
        unseen_mask: Any = None,
        *,
        topk: tuple[int, ...] | list[int] | None = None,
        empty: str | EmptyColumn = EmptyColumn.ZERO,
        row_pooled: bool = False,
        workdir: str | Path | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.protocol = _resolve_protocol(protocol)
        seen = _as_mask(seen_mask, "seen_mask")
        unseen = ~seen if unseen_mask is None else _as_mask(unseen_mask, "unseen_mask")
        self.columns = block_columns(self.protocol, seen, unseen)
        self._evaluators: dict[Block, StreamingEvaluator] = {}
        try:
            for block, cols in self.columns.items():
                self._evaluators[block] = StreamingEvaluator(
                    self.protocol, seen[cols], unseen[cols], topk=topk, empty=empty, row_pooled=row_pooled,
                    blocks=(block,), workdir=workdir, max_entries=max_entries,
                )  # fmt: skip
        except ValueError:
            self.close()
            raise
        self.n_labels = seen.size

    def update(self, scores: Any, labels: Any) -> None:
        """Add a chunk of rows.

        Args:
            scores: block name -> [n, K_b] scores of the block's labels (in column order), or one
                [n, C] matrix whose block columns are used as they are (scores without any
                normalisation across labels, e.g. CLIP's zero-shot cosines).
            labels: [n, C] in {+1, -1, 0}.
        """
        y = as_numpy(labels, "labels")
        if y.ndim != 2 or y.shape[1] != self.n_labels:
            raise ValueError(f"labels: expected [n, {self.n_labels}], got shape {tuple(y.shape)}")
        if isinstance(scores, dict):
            given = {Block(k): v for k, v in scores.items()}
            missing = [b.value for b in self._evaluators if b not in given]
            if missing:
                raise ValueError(f"scores for block(s) {', '.join(missing)} are missing")
        else:
            full = as_numpy(scores, "scores")
            given = {b: full[:, cols] for b, cols in self.columns.items()}
        for block, ev in self._evaluators.items():
            ev.update(given[block], y[:, self.columns[block]])

    def compute(self) -> dict[str, float]:
        """Every block's figures in one flat dict (see `StreamingEvaluator.compute`)."""
        results: dict[str, float] = {}
        for ev in self._evaluators.values():
            results.update(ev.compute())
        return results

    @property
    def per_label_ap(self) -> dict[str, np.ndarray]:
        """Block name -> AP of each of the block's labels, in column order (after `compute`)."""
        out: dict[str, np.ndarray] = {}
        for ev in self._evaluators.values():
            out.update(ev.per_label_ap)
        return out

    def close(self) -> None:
        for ev in self._evaluators.values():
            ev.close()

    def __enter__(self) -> "BlockwiseEvaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate(
    scores: Any,
    labels: Any,
    protocol: str | Protocol = Protocol.GENERIC,
    seen_mask: Any = None,
    unseen_mask: Any = None,
    *,
    topk: tuple[int, ...] | list[int] | None = None,
    empty: str | EmptyColumn = EmptyColumn.ZERO,
    row_pooled: bool = False,
    blocks: tuple[str | Block, ...] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workdir: str | Path | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> dict[str, float]:
    """Evaluate in-memory [N, C] scores and labels; the same code path as `StreamingEvaluator`.

    Args: as `StreamingEvaluator`, plus `chunk_rows`, the rows fed per update.

    Returns:
        The flat dict of figures (e.g. `zsl/mAP`, `gzsl/F1@5`).

    Raises:
        ValueError: see `StreamingEvaluator`.
    """
    s = check_scores(as_numpy(scores, "scores"))
    y = as_numpy(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must have the same shape [N, C]")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    ev = StreamingEvaluator(
        protocol, seen_mask, unseen_mask, topk=topk, empty=empty, row_pooled=row_pooled,
        blocks=blocks, workdir=workdir, max_entries=max_entries,
    )  # fmt: skip
    try:
        for a in range(0, max(s.shape[0], 1), chunk_rows):
            ev.update(s[a : a + chunk_rows], y[a : a + chunk_rows])
        return ev.compute()
    finally:
        ev.close()


def format_table(results: dict[str, float], *, percent: bool = True, digits: int = 1) -> str:
    """Render the usual results table: one row per block, columns mAP then P/R/F1 at each K.

    Args:
        results: the dict returned by `StreamingEvaluator.compute` / `evaluate`.
        percent: show figures x 100.
        digits: decimals shown.

    Returns:
        A Markdown table (empty string when `results` holds no block figure).
    """
    blocks: list[str] = []
    ks: set[int] = set()
    extra = [m for m in ("mAP_weighted", "mAP_row_pooled") if any(key.endswith("/" + m) for key in results)]
    for key in results:
        if "/" not in key:
            continue
        block, fig = key.split("/", 1)
        if block not in blocks:
            blocks.append(block)
        if "@" in fig:
            k = fig.split("@", 1)[1]
            if k.isdigit():
                ks.add(int(k))
    if not blocks:
        return ""
    columns = ["mAP", *extra] + [f"{m}@{k}" for k in sorted(ks) for m in ("P", "R", "F1")]
    scale = 100.0 if percent else 1.0

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        v = float(v)
        return "nan" if np.isnan(v) else f"{v * scale:.{digits}f}"

    header = ["block", *columns, "images"]
    rows = [
        [b, *(cell(results.get(f"{b}/{c}")) for c in columns), str(int(results.get(f"{b}/n_images", 0)))] for b in blocks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(x.rjust(w) if i else x.ljust(w) for i, (x, w) in enumerate(zip(r, widths))) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), sep, *(fmt(r) for r in rows)])

