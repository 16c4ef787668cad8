"""The dependency direction of ../shared/DESIGN.md, checked on the source (AST), not by convention.

- ``metrics`` (the model-agnostic foundation) imports no other package of the project — not even
  lazily, not by naming a module in a string: the reference model reaches the metrics through the
  registries' entry points (``metrics/registry.py``).
- Library packages import no ``click``: the CLI lives in ``benchmarks/cli/``.
- No package imports ``benchmarks`` or ``dashboards`` (except ``dashboards`` reading, and the CLI).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metrics", "musiclm_ref", "human_eval", "dashboards", "benchmarks")


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "checkpoints" not in p.parts)


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


@pytest.mark.parametrize("package", ["metrics", "musiclm_ref", "human_eval", "dashboards"])
def test_library_packages_import_no_click(package):
    offenders = [str(p.relative_to(ROOT)) for p in _modules(package) if "click" in _imports(p)]
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
