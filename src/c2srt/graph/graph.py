"""`CategoryGraph`: labels, directed weighted edges neighbour -> category, provenance; versioned JSON.

Edges follow PyG's convention (source -> target): an edge n -> c means that category c receives a
message from its neighbour n. A graph stores, per category, its neighbour list with strengths in
(0, 1]; self-loops are never stored (GATv2Conv adds them) and a (neighbour, category) pair appears
at most once. The JSON file records how the graph was made (`provenance`) and how many model
answers were dropped while building it (`report`), so a cached graph can be rebuilt and audited.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import atomic_write_text
from ..vocabulary import check_unique

if TYPE_CHECKING:  # pragma: no cover
    import torch

GRAPH_FORMAT = "c2srt-graph"
GRAPH_VERSION = 1
GRAPH_KEYS = frozenset({"format", "version", "labels", "seen", "neighbors", "provenance", "report"})
# Why an answer (a proposed edge) was dropped; counted in `CategoryGraph.report["dropped"]`.
DROP_REASONS = ("unknown_name", "duplicate", "self_loop", "out_of_range", "malformed", "below_cut")


def _empty_report() -> dict[str, Any]:
    return {"dropped": {r: 0 for r in DROP_REASONS}, "repaired": {"case": 0, "fuzzy": 0}, "examples": {}}


def sum_reports(*reports: Mapping[str, Any]) -> dict[str, Any]:
    """Add up the dropped / repaired counts of several graph reports."""
    report = _empty_report()
    for rep in reports:
        for group in ("dropped", "repaired"):
            for key, value in rep.get(group, {}).items():
                report[group][key] = report[group].get(key, 0) + int(value)
    return report


class CategoryGraph:
    """A category graph over a vocabulary: per-category neighbour lists with strengths in (0, 1].

    Args:
        labels: the nodes, unique non-empty strings, in a fixed order.
        neighbors: category -> [(neighbour, strength), ...]; categories without an entry have no
            in-edges. Lists are stored sorted by decreasing strength (ties by label order).
        seen: the labels seen in training (optional; used for drawing and for subgraphs).
        provenance: how the graph was made (source, model, prompt hash, date, parameters).
        report: counts of dropped answers by reason (see `DROP_REASONS`).

    Raises:
        ValueError: on duplicate / empty labels, an edge naming a label outside `labels`, a
            self-loop, a duplicate edge or a strength outside (0, 1].

    Example:
        >>> g = CategoryGraph(["dog", "cat", "ball"], {"dog": [("cat", 0.8), ("ball", 0.5)]})
        >>> g.neighbors("dog")
        [('cat', 0.8), ('ball', 0.5)]
        >>> ei, ew = g.edge_index_for(["cat", "dog"])  # edge cat -> dog only
    """

    def __init__(
        self,
        labels: Sequence[str],
        neighbors: Mapping[str, Iterable[tuple[str, float]]] | None = None,
        *,
        seen: Iterable[str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        report: Mapping[str, Any] | None = None,
    ) -> None:
        self.labels: list[str] = list(labels)
        for i, name in enumerate(self.labels):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"graph label #{i} is empty or not a string: {name!r}")
        check_unique(self.labels, what="the graph's labels")
        self._index: dict[str, int] = {name: i for i, name in enumerate(self.labels)}
        self._neighbors: dict[str, list[tuple[str, float]]] = {}
        for cat, items in (neighbors or {}).items():
            if cat not in self._index:
                raise ValueError(f"neighbour list for {cat!r}, which is not a graph label")
            clean: dict[str, float] = {}
            for item in items:
                try:
                    name, weight = item
                    weight = float(weight)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"neighbour of {cat!r}: expected (name, strength), got {item!r}") from err
                if name not in self._index:
                    raise ValueError(f"edge {name!r} -> {cat!r}: {name!r} is not a graph label")
                if name == cat:
                    raise ValueError(f"edge {name!r} -> {cat!r}: self-loops are not stored (GATv2Conv adds them)")
                if name in clean:
                    raise ValueError(f"edge {name!r} -> {cat!r} appears twice")
                if not (0.0 < weight <= 1.0) or math.isnan(weight):
                    raise ValueError(f"edge {name!r} -> {cat!r}: strength {weight} is outside (0, 1]")
                clean[name] = weight
            if clean:
                self._neighbors[cat] = sorted(clean.items(), key=lambda kv: (-kv[1], self._index[kv[0]]))
        self.seen: list[str] | None = None
        if seen is not None:
            seen_set = set(seen)
            unknown = sorted(seen_set - set(self._index))
            if unknown:
                raise ValueError(f"seen label {unknown[0]!r} is not a graph label ({len(unknown)} unknown)")
            self.seen = [n for n in self.labels if n in seen_set]
        self.provenance: dict[str, Any] = dict(provenance or {})
        base = _empty_report()
        for key, value in dict(report or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key].update(value)
            else:
                base[key] = value
        self.report: dict[str, Any] = base

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def __repr__(self) -> str:
        return f"CategoryGraph(V={len(self.labels)}, E={self.num_edges}, source={self.provenance.get('source')!r})"

    @property
    def num_edges(self) -> int:
        return sum(len(v) for v in self._neighbors.values())

    def neighbors(self, label: str) -> list[tuple[str, float]]:
        """The neighbours of `label` (edges neighbour -> label), strongest first.

        Raises:
            ValueError: if `label` is not in the graph.
        """
        if label not in self._index:
            raise ValueError(f"label {label!r} is not in the graph ({len(self.labels)} labels)")
        return list(self._neighbors.get(label, []))

    def edges(self) -> list[tuple[str, str, float]]:
        """All edges as (source neighbour, target category, strength), in label order."""
        return [(n, c, w) for c in self.labels for n, w in self._neighbors.get(c, [])]

    def edge_index_for(self, names: Sequence[str], device: Any = None) -> "tuple[torch.Tensor, torch.Tensor]":
        """Edges among `names`, indexed by position in `names` (PyG convention, source -> target).

        `names` may be any ordered subset or superset of the graph's labels (e.g. the seen labels
        in training, seen + unseen at test); names absent from the graph get no edges.

        Args:
            names: the current vocabulary, in the order of the model's label axis.
            device: torch device of the returned tensors.

        Returns:
            `edge_index` LongTensor [2, E] (row 0 neighbour, row 1 category) and `edge_weight`
            FloatTensor [E] in (0, 1].

        Raises:
            ValueError: if `names` contains a duplicate.
        """
        import torch

        check_unique(names)
        pos = {name: i for i, name in enumerate(names)}
        src: list[int] = []
        dst: list[int] = []
        weight: list[float] = []
        for j, cat in enumerate(names):
            for nb, w in self._neighbors.get(cat, ()):
                i = pos.get(nb)
                if i is not None:
                    src.append(i)
                    dst.append(j)
                    weight.append(w)
        edge_index = torch.tensor([src, dst], dtype=torch.long, device=device).reshape(2, len(src))
        edge_weight = torch.tensor(weight, dtype=torch.float32, device=device)
        return edge_index, edge_weight

    # -------------------------------------------------------------- derived graphs
    def subgraph(self, names: Iterable[str]) -> "CategoryGraph":
        """The graph restricted to `names` (in the given order) and the edges among them.

        Raises:
            ValueError: if a name is not in the graph.
        """
        names = list(names)
        missing = [n for n in names if n not in self._index]
        if missing:
            raise ValueError(f"subgraph: label {missing[0]!r} is not in the graph ({len(missing)} missing)")
        keep = set(names)
        nbrs = {c: [(n, w) for n, w in self._neighbors.get(c, []) if n in keep] for c in names}
        seen = None if self.seen is None else [n for n in self.seen if n in keep]
        prov = dict(self.provenance, subgraph_of=len(self.labels))
        return CategoryGraph(names, nbrs, seen=seen, provenance=prov, report=self.report)

    def reordered(self, labels: Sequence[str]) -> "CategoryGraph":
        """The same graph (edges, seen set, provenance, report) with its labels in the order given.

        Raises:
            ValueError: if `labels` is not a permutation of the graph's labels.
        """
        labels = list(labels)
        if sorted(labels) != sorted(self.labels):
            raise ValueError("reordered: the labels must be the graph's own labels, each once")
        return CategoryGraph(labels, self._neighbors, seen=self.seen, provenance=self.provenance, report=self.report)

    def merge(self, other: "CategoryGraph") -> "CategoryGraph":
        """Union of both graphs; for a (neighbour, category) pair present in both, `self` wins.

        Labels keep `self`'s order, followed by `other`'s new labels. Seen sets are united.
        """
        return self._combine(other, only_new=False)

    def extend(self, other: "CategoryGraph") -> "CategoryGraph":
        """Add `other`'s labels that `self` lacks, with the edges of `other` that touch a new label.

        Edges among `self`'s own labels are left exactly as they are (use `merge` to add those too).
        """
        return self._combine(other, only_new=True)

    def _combine(self, other: "CategoryGraph", *, only_new: bool) -> "CategoryGraph":
        new = [n for n in other.labels if n not in self._index]
        new_set = set(new)
        labels = self.labels + new
        nbrs: dict[str, dict[str, float]] = {c: dict(v) for c, v in self._neighbors.items()}
        for cat, items in other._neighbors.items():
            for nb, w in items:
                if only_new and cat not in new_set and nb not in new_set:
                    continue
                nbrs.setdefault(cat, {}).setdefault(nb, w)
        seen: list[str] | None = None
        if self.seen is not None or other.seen is not None:
            seen = list(dict.fromkeys((self.seen or []) + (other.seen or [])))
        prov = dict(self.provenance)
        prov["merged"] = list(prov.get("merged", [])) + [dict(other.provenance, mode="extend" if only_new else "merge")]
        report = sum_reports(self.report, other.report)
        return CategoryGraph(labels, {c: list(v.items()) for c, v in nbrs.items()}, seen=seen, provenance=prov, report=report)

    # -------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the file format, see `save`)."""
        return {
            "format": GRAPH_FORMAT,
            "version": GRAPH_VERSION,
            "labels": list(self.labels),
            "seen": None if self.seen is None else list(self.seen),
            "neighbors": {c: [[n, w] for n, w in self._neighbors[c]] for c in self.labels if c in self._neighbors},
            "provenance": self.provenance,
            "report": self.report,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "graph") -> "CategoryGraph":
        """Validate and build a graph from `to_dict()` output.

        Args:
            data: the parsed JSON object.
            where: names the origin (a file path) in error messages.

        Raises:
            ValueError: on a wrong format tag or version, unknown keys, a malformed field, or an
                edge naming a label outside the vocabulary; the message starts with `where`.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != GRAPH_FORMAT:
            raise ValueError(f"{where}: 'format' is {data.get('format')!r}, expected {GRAPH_FORMAT!r}")
        if data.get("version") != GRAPH_VERSION:
            raise ValueError(f"{where}: unsupported graph version {data.get('version')!r} (this c2srt reads {GRAPH_VERSION})")
        unknown = sorted(set(data) - GRAPH_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(GRAPH_KEYS))}")
        labels = data.get("labels")
        if not isinstance(labels, list) or not all(isinstance(s, str) for s in labels):
            raise ValueError(f"{where}: 'labels' must be a list of strings")
        raw = data.get("neighbors") or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: 'neighbors' must be an object category -> [[neighbour, strength], ...]")
        nbrs: dict[str, list[tuple[str, float]]] = {}
        for cat, items in raw.items():
            if not isinstance(items, list):
                raise ValueError(f"{where}: neighbours of {cat!r} must be a list of [name, strength]")
            pairs = []
            for item in items:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], (int, float))):
                    raise ValueError(f"{where}: neighbour of {cat!r} must be [name, strength], got {item!r}")
                pairs.append((item[0], float(item[1])))
            nbrs[cat] = pairs
        for key in ("provenance", "report"):
            if data.get(key) is not None and not isinstance(data[key], Mapping):
                raise ValueError(f"{where}: {key!r} must be an object")
        seen = data.get("seen")
        if seen is not None and (not isinstance(seen, list) or not all(isinstance(s, str) for s in seen)):
            raise ValueError(f"{where}: 'seen' must be null or a list of strings")
        try:
            return cls(labels, nbrs, seen=seen, provenance=data.get("provenance"), report=data.get("report"))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the versioned JSON file atomically (temporary file + rename). Returns the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "CategoryGraph":
        """Read and validate a graph file written by `save` (or by hand in the same format).

        Raises:
            ValueError: if the file is not valid JSON or not a valid graph; the message names the file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
        return cls.from_dict(data, where=str(path))
