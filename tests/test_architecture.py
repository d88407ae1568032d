"""The layers of docs/ARCHITECTURE.md, read against the tree: imports run one way, down the layers.

Every module of src/c2srt belongs to one layer; no module imports a module of a higher layer, and
no modules import each other, directly or through others (module-level, function-level and
`TYPE_CHECKING` imports alike); there is no exception list. The core never imports Lightning or
YAML, and nothing below the training layer imports Lightning or Gradio, or loads them (nor the
training code, the CLI, the web page or the mini-world) when imported. The module map names every
module and benchmark, and only files that exist.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "c2srt"
DOC = ROOT / "docs" / "ARCHITECTURE.md"

# Bottom to top; a module belongs to the layer of its longest matching prefix ("c2srt": the package).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundations", ("c2srt.version", "c2srt.constants", "c2srt.choices", "c2srt.registry", "c2srt.io",
                     "c2srt.images", "c2srt.logs", "c2srt.safe_pickle", "c2srt.vocabulary", "c2srt.environment")),
    ("config", ("c2srt.config",)),
    ("components", ("c2srt.data", "c2srt.heads", "c2srt.graph", "c2srt.backbone", "c2srt.text", "c2srt.losses",
                    "c2srt.metrics", "c2srt.protocol", "c2srt.viz")),
    ("model", ("c2srt.model",)),
    ("library", ("c2srt.evaluate", "c2srt.checkpoint", "c2srt.calibration", "c2srt.optim")),
    ("training", ("c2srt.training",)),
    ("applications", ("c2srt.predict", "c2srt.serve", "c2srt.miniworld", "c2srt.cli", "c2srt")),
)  # fmt: skip
CORE = ("c2srt.backbone", "c2srt.text", "c2srt.heads", "c2srt.model", "c2srt.losses", "c2srt.graph", "c2srt.metrics")
NOT_IN_CORE = ("lightning", "pytorch_lightning", "yaml")
NOT_BELOW_TRAINING = ("lightning", "pytorch_lightning", "gradio")
# what importing any module below the training layer must not load
NEVER_LOADED_BELOW_TRAINING = (*NOT_BELOW_TRAINING, "c2srt.training", "c2srt.cli", "c2srt.serve", "c2srt.miniworld")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their __init__)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module an import statement of the file names, at any depth (lazy imports too).

    Relative imports are resolved; `from x import y` names both `x` and `x.y` (y may be a module).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> int | None:
    """Index of the module's layer in `LAYERS` (None: in none)."""
    best: tuple[int, int] | None = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or (p != "c2srt" and module.startswith(p + ".")):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return best[0] if best else None


def import_graph(modules: dict[str, Path] = MODULES) -> dict[str, set[str]]:
    """Module -> the package modules it imports (itself excluded)."""
    return {m: {i for i in _imports(m, p) if i in modules and i != m} for m, p in modules.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_import_resolution_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ..training import fit\n    import lightning.pytorch as pl\nfrom . import isr\n")
    found = _imports("c2srt.heads.m", src)
    assert {"c2srt.training", "c2srt.training.fit", "lightning.pytorch", "c2srt.heads", "c2srt.heads.isr"} <= found
    assert _within("lightning.pytorch", NOT_IN_CORE) and not _within("lightningx", NOT_IN_CORE)


def test_cycle_finder_and_layers_on_a_toy_graph() -> None:
    toy = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(toy) == [["a", "b", "c"]]
    assert layer_of("c2srt") == len(LAYERS) - 1 and layer_of("c2srt.heads.isr") == layer_of("c2srt.heads")
    assert layer_of("c2srt.versioning") is None  # prefixes match whole module names only


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in MODULES if layer_of(m) is None]
    assert not unplaced, f"add these modules to a layer (tests/test_architecture.py, docs/ARCHITECTURE.md): {unplaced}"


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, "modules that import each other: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_imports_run_down_the_layers() -> None:
    names = [name for name, _ in LAYERS]
    up = sorted(
        f"{a} ({names[layer_of(a)]}) imports {b} ({names[layer_of(b)]})"  # type: ignore[index]
        for a, targets in import_graph().items()
        for b in targets
        if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)  # type: ignore[operator]
    )
    assert not up, "imports that run up the layers:\n" + "\n".join(up)


@pytest.mark.parametrize("name", [n for n in MODULES if _within(n, CORE)])
def test_core_never_imports_lightning_or_yaml(name: str) -> None:
    bad = sorted(m for m in _imports(name, MODULES[name]) if _within(m, NOT_IN_CORE))
    assert not bad, f"{name} (core) imports {', '.join(bad)}"


def test_nothing_below_training_imports_lightning_or_gradio() -> None:
    training = [name for name, _ in LAYERS].index("training")
    bad = sorted(
        f"{name} imports {m}"
        for name, path in MODULES.items()
        if (layer_of(name) or 0) < training
        for m in _imports(name, path)
        if _within(m, NOT_BELOW_TRAINING)
    )
    assert not bad, "\n".join(bad)


def test_importing_the_library_loads_no_trainer_cli_page_or_application() -> None:
    """The transitive check: what importing every module below the training layer actually loads."""
    training = [name for name, _ in LAYERS].index("training")
    below = [n for n in MODULES if (layer_of(n) or 0) < training]
    code = (
        "import sys\n"
        f"for m in {below!r}: __import__(m)\n"
        f"print(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in {NEVER_LOADED_BELOW_TRAINING!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_mini_world_dataset_resolves_by_name_without_the_library_importing_it() -> None:
    code = (
        "import sys\n"
        "from c2srt.data import build_dataset, list_datasets\n"
        "from c2srt.config import DataCfg\n"
        "assert 'miniworld' in list_datasets() and 'c2srt.miniworld' not in sys.modules\n"
        "ds = build_dataset(DataCfg(name='miniworld', options={'n_test': 4}), 'test')\n"
        "print(type(ds).__module__, len(ds))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["c2srt.miniworld.dataset", "4"], out.stdout + out.stderr


def test_every_module_and_benchmark_has_a_row() -> None:
    doc = DOC.read_text(encoding="utf-8")
    files = [p.relative_to(PKG).as_posix() for p in MODULES.values()]
    files += [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "benchmarks").glob("*.py"))]
    missing = [f for f in files if f"`{f}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md has no row for: {', '.join(missing)}"


def test_every_file_the_map_names_exists() -> None:
    named = set(re.findall(r"`((?:[\w.]+/)*\w+\.(?:py|sh))`", DOC.read_text(encoding="utf-8")))
    assert named, "no file names found: the pattern no longer matches the document"
    gone = sorted(n for n in named if not (PKG / n).is_file() and not (ROOT / n).is_file())
    assert not gone, f"docs/ARCHITECTURE.md names files that do not exist: {', '.join(gone)}"


def test_the_document_lists_the_layers_of_this_test() -> None:
    """docs/ARCHITECTURE.md's layer list names each layer, in this order."""
    doc = DOC.read_text(encoding="utf-8")
    found = [doc.find(f"**{name}**") for name, _ in LAYERS]
    assert all(i >= 0 for i in found) and found == sorted(found), f"layers in the document: {found}"
