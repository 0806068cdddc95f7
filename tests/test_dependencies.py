"""Every third-party package imported directly is declared in pyproject.toml: the package's
own imports as dependencies, the tests', scripts' and benchmarks' as dependencies or dev."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OURS = {"mlx_entropix", "tests", "mlx_main", "mlx_server", "mlx_download_weights", "_live_server",
        "conftest"}  # fmt: skip
# a test may use another's helpers, or a benchmark script's (which import each other too)
OURS |= {p.stem for d in ("tests", "benchmarks", "scripts") for p in (ROOT / d).glob("*.py")}


def _names(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def _top_level_imports(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - OURS - {"__future__"}


def _undeclared(paths: list[Path], declared: set[str]) -> list[str]:
    dists = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(_top_level_imports(paths)):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} (from {', '.join(sorted(names))})")
    return missing


def test_package_imports_are_dependencies():
    declared = _names(PYPROJECT["project"]["dependencies"])
    assert not _undeclared(list((ROOT / "mlx_entropix").rglob("*.py")), declared)


def test_tool_imports_are_declared():
    declared = _names(PYPROJECT["project"]["dependencies"])
    declared |= _names(PYPROJECT["dependency-groups"]["dev"])
    paths = [p for d in ("tests", "scripts", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    paths += list(ROOT.glob("*.py"))
    assert not _undeclared(paths, declared)
