"""The dependency direction of ../shared/DESIGN.md, checked on the source (AST), not by convention.

- ``metrics`` (the model-agnostic foundation) imports no other package of the project — not even
  lazily, not by naming a module in a string: the reference model reaches the metrics through the
  registries' entry points (``metrics/registry.py``).
- Library packages import no ``click``: the CLI lives in ``benchmarks/cli/``.
- No package imports ``benchmarks`` or ``dashboards`` (except ``dashboards`` reading, and the CLI).
- No import cycles among the project's modules (inside a package or across packages).

What counts as an import for the cycle check: every ``import`` statement wherever it stands — module
level, inside a function, under ``if TYPE_CHECKING:`` — and ``__import__("m")`` /
``importlib.import_module("m")`` with a literal name. Function-level and type-only imports count because
the cycles this project actually had hid exactly there (``metrics.metric`` ↔ ``metrics.intervals``
through a lazy import and a ``TYPE_CHECKING`` one; ``benchmarks/figures*.py`` through ``__import__`` and
lazy imports back): deferring an import only postpones a half-initialized module to call time and hides
that two modules are one concern split in two or a layer pointing the wrong way. Lazy imports of
third-party packages (torch, tensorflow) stay free: only the project's own modules form the graph.
Registry strings (``"metrics.embedders.clap:joint"``) do not count: the registry is the sanctioned seam
that lets a lower module name a plugin without importing it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metrics", "musiclm_ref", "human_eval", "dashboards", "benchmarks")


def _modules(package: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "checkpoints" not in p.parts)


def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports (statements anywhere, and importlib strings)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = re.fullmatch(r"([a-z_]+)(\.[a-z_.]+)?(:[A-Za-z_]+)", node.value)  # "module:attr" registry strings
            if m:
                out.add(m.group(1))
    return out


@pytest.mark.parametrize("path", _modules("metrics"), ids=lambda p: str(p.relative_to(ROOT)))
def test_metrics_imports_no_other_project_package(path):
    bad = _imports(path) & {"musiclm_ref", "human_eval", "dashboards", "benchmarks"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} (metrics is the foundation)"


def _click_importers(package: str, root: Path = ROOT) -> list[str]:
    return [str(p.relative_to(root)) for p in _modules(package, root) if "click" in _imports(p)]


@pytest.mark.parametrize("package", ["metrics", "musiclm_ref", "human_eval", "dashboards"])
def test_library_packages_import_no_click(package):
    offenders = _click_importers(package)
    assert not offenders, f"click belongs in benchmarks/cli/, not in {offenders}"


@pytest.mark.parametrize("package", ["metrics", "musiclm_ref", "human_eval"])
def test_nothing_imports_the_harness_or_the_dashboard(package):
    offenders = [str(p.relative_to(ROOT)) for p in _modules(package) if _imports(p) & {"benchmarks", "dashboards"}]
    assert not offenders, offenders


def test_the_checker_sees_lazy_and_string_imports(tmp_path):
    """The checker itself must be able to fail: lazy imports and registry strings count."""
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import musiclm_ref.mulan\nX = {'a': 'musiclm_ref.semantic:load_tokenizer'}\n")
    assert "musiclm_ref" in _imports(p)


# ----------------------------------------------------------------------------- import cycles


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(path: Path, name: str) -> list[tuple[str, ...]]:
    """What a module may import (see the module doc for what counts), one tuple of alternatives per
    imported name: ``from X import a`` is ``("X.a", "X")``, the first that is a project module counts."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, ...]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name,) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out += [(f"{base}.{a.name}", base) for a in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("__import__", "import_module")):
            out.append((node.args[0].value,))
    return out


def _import_graph(packages: Iterable[str], root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the project modules it imports (a submodule import is an edge to the submodule; parent
    packages are not edges: Python has them in ``sys.modules`` before any submodule runs)."""
    paths = {_module_name(p, root): p for pkg in packages for p in _modules(pkg, root)}
    graph = {}
    for name, path in paths.items():
        targets = (next((n for n in alternatives if n in paths), None) for alternatives in _imported_names(path, name))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    cycles = _cycles(_import_graph(PACKAGES))
    assert not cycles, "import cycles (break them; see this module's doc for what counts): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return root


def test_the_cycle_checker_fails_on_injected_cycles(tmp_path):
    """Each way a cycle hid in this project, injected into a throwaway package, is reported."""
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",                                   # module level
        "pkg/b.py": "def f():\n    from pkg import a\n",                      # back, lazily
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import D\n",
        "pkg/d.py": "def g():\n    from pkg.c import x\n",                    # relative + type-only
        "pkg/e.py": "X = __import__('pkg.sub.f', fromlist=['Y'])\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/f.py": "import importlib\nM = importlib.import_module('pkg.e')\n",
        "pkg/ok.py": "import numpy\nfrom pkg import a\nR = {'x': 'pkg.ok:R'}\n",  # one-way; registry strings
    })
    assert _cycles(_import_graph(["pkg"], root)) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"], ["pkg.e", "pkg.sub.f"]]


def test_the_cycle_checker_passes_a_package_importing_its_submodules(tmp_path):
    """A package ``__init__`` re-exporting its submodules, which import siblings absolutely, is no cycle."""
    root = _package(tmp_path, {
        "pkg/__init__.py": "from pkg.a import A\nfrom pkg.b import B\n",
        "pkg/a.py": "A = 1\n",
        "pkg/b.py": "from pkg import a\nfrom pkg.a import A as B\n",
    })
    assert _cycles(_import_graph(["pkg"], root)) == []


def test_the_click_checker_fails_on_an_injected_click_import(tmp_path):
    root = _package(tmp_path, {
        "lib/__init__.py": "",
        "lib/clean.py": "import numpy\n",
        "lib/deep/__init__.py": "",
        "lib/deep/cmd.py": "def main():\n    import click\n",
        "lib/opt.py": "from click import option\n",
    })
    assert sorted(_click_importers("lib", root)) == ["lib/deep/cmd.py", "lib/opt.py"]
