"""docs/ARCHITECTURE.md read against the tree, and the dependency rules it states.

Every module of src/c2srt and every benchmark script has a row in the map, every file the map
names exists, the core never imports Lightning, the trainer or the CLI (not even lazily), and the
library never imports the applications built on it.
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

CORE = ("c2srt.backbone", "c2srt.text", "c2srt.heads", "c2srt.model", "c2srt.losses", "c2srt.graph", "c2srt.metrics")
APPLICATIONS = ("c2srt.cli", "c2srt.train", "c2srt.serve", "c2srt.miniworld")
NOT_IN_CORE = ("lightning", "pytorch_lightning", "yaml", "c2srt.train", "c2srt.cli")
NOT_IN_LIBRARY = ("lightning", "pytorch_lightning", "gradio", *APPLICATIONS)
# the one edge from the library to an application: `data.name: miniworld` through the registry
ALLOWED = {("c2srt.data", "c2srt.miniworld.dataset"), ("c2srt.data", "c2srt.miniworld")}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their __init__)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


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


def test_import_resolution_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ..train import fit\n    import lightning.pytorch as pl\nfrom . import isr\n")
    found = _imports("c2srt.heads.m", src)
    assert {"c2srt.train", "c2srt.train.fit", "lightning.pytorch", "c2srt.heads", "c2srt.heads.isr"} <= found
    assert _within("c2srt.train.fit", NOT_IN_CORE) and not _within("c2srt.trainer", NOT_IN_CORE)


def test_every_module_and_benchmark_has_a_row() -> None:
    doc = DOC.read_text(encoding="utf-8")
    files = [p.relative_to(PKG).as_posix() for p in _modules().values()]
    files += [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "benchmarks").glob("*.py"))]
    missing = [f for f in files if f"`{f}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md has no row for: {', '.join(missing)}"


def test_every_file_the_map_names_exists() -> None:
    named = set(re.findall(r"`((?:[\w.]+/)*\w+\.(?:py|sh))`", DOC.read_text(encoding="utf-8")))
    assert named, "no file names found: the pattern no longer matches the document"
    gone = sorted(n for n in named if not (PKG / n).is_file() and not (ROOT / n).is_file())
    assert not gone, f"docs/ARCHITECTURE.md names files that do not exist: {', '.join(gone)}"


@pytest.mark.parametrize("name", [n for n in _modules() if _within(n, CORE)])
def test_core_never_imports_lightning_trainer_or_cli(name: str) -> None:
    bad = sorted(m for m in _imports(name, _modules()[name]) if _within(m, NOT_IN_CORE))
    assert not bad, f"{name} (core) imports {', '.join(bad)}"


@pytest.mark.parametrize("name", [n for n in _modules() if not _within(n, APPLICATIONS)])
def test_library_never_imports_the_applications(name: str) -> None:
    bad = sorted(
        m for m in _imports(name, _modules()[name]) if _within(m, NOT_IN_LIBRARY) and (name, m) not in ALLOWED
    )
    assert not bad, f"{name} (library) imports {', '.join(bad)}"


def test_importing_the_core_loads_no_trainer() -> None:
    """The transitive check: what importing every core module (and the package) actually loads."""
    code = (
        "import sys, c2srt\n"
        f"for m in {[n for n in _modules() if _within(n, CORE)]!r}: __import__(m)\n"
        f"print(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in {NOT_IN_LIBRARY[:3] + ('c2srt.train', 'c2srt.cli', 'c2srt.serve')!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
