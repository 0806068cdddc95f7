"""The package's shape: no import cycle, the core imports no front end, no module too long,
and the refactors keep the tokens: same seed + prompt + mode gives the ids recorded before."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mlx_entropix"
# The core, in layers: the contract every room shares (the config, the event schema, the
# errors, the answer reader), the uncertainty (metrics, decision, the device step), the models
# and their caches, the engine (generation, batching, forks, events of a row); mlx_lm_sampler
# adapts the first three to mlx-lm. Front ends see the core as one room.
CONTRACT = {"config", "events", "errors", "answers"}
LAYERS = {"contract": {"contract"},
          "uncertainty": {"contract", "uncertainty"},
          "models": {"contract", "uncertainty", "models"},
          "engine": {"contract", "uncertainty", "models", "engine"},
          "mlx_lm_sampler": {"contract", "uncertainty", "models"}}  # fmt: skip
# Which rooms each room may import (the core: nothing but itself; see docs/ARCHITECTURE.md).
ALLOWED = {
    **{layer: inner for layer, inner in LAYERS.items()},
    "runtime": {"runtime"},
    "io": {"core", "runtime", "io"},
    "cli": {"core", "runtime", "io", "cli"},
    "server": {"core", "runtime", "io", "server"},
    "eval": {"core", "runtime", "io", "eval"},
}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str | None:
    """The core layer a module belongs to, None outside the core."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] in CONTRACT:
        return "contract"
    return parts[1] if parts[1] in LAYERS else None


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return "core" if layer(module) else parts[1]


def imports_of(path: Path, module: str) -> set[str]:
    """Package modules imported by ``path`` at run time (``if TYPE_CHECKING:`` blocks skipped)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mlx_entropix"):
                continue
            for alias in node.names:  # "from . import x" may name a submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).exists() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mlx_entropix")}
    return found


GRAPH = {module_name(p): imports_of(p, module_name(p)) for p in PKG.rglob("*.py")}


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])


def test_rooms_import_inward_only():
    bad = []
    for module, deps in GRAPH.items():
        src = layer(module) or room(module)
        for dep in deps:
            dst = layer(dep) if layer(module) else room(dep)
            dst = dst or room(dep)
            if src in ALLOWED and dst != "package" and dst not in ALLOWED[src]:
                bad.append(f"{module} ({src}) imports {dep} ({dst})")
    assert not bad, "\n".join(bad)


def test_the_core_is_in_rooms():
    """The core's modules live in its rooms; only the contract and the mlx-lm adapter are
    top-level modules."""
    top = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert top == CONTRACT | {"mlx_lm_sampler"}


def test_the_walk_sees_imports():
    """Guards the two tests above against an import walk that silently finds nothing."""
    assert "mlx_entropix.uncertainty.sampler" in GRAPH["mlx_entropix.engine.request"]
    assert "mlx_entropix.server.deps" in GRAPH["mlx_entropix.server.openai_api"]
    assert "mlx_entropix.io.load" not in GRAPH["mlx_entropix.engine.generate"]  # TYPE_CHECKING only


def test_no_module_is_too_long():
    long = {m: n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES
            for m in [module_name(p)]}  # fmt: skip
    assert not long, f"modules over {MAX_LINES} lines: {long}"


GOLDEN = json.loads((ROOT / "tests" / "data" / "golden_tokens.json").read_text())


@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: f"{c['mode']}-{c['prompt'][:12]}")
def test_tokens_match_the_recording(embedded, case):
    """Ids recorded before the package moved into rooms (the reference coefficients, so a new
    shipped config does not change them): refactors must not change what is generated."""
    from mlx_entropix.config import SamplerConfig
    from mlx_entropix.engine.generate import generate

    events = generate(embedded, case["prompt"], mode=case["mode"], config=SamplerConfig(),
                      seed=case["seed"], max_tokens=case["max_tokens"])  # fmt: skip
    assert [e.id for e in events if e.type == "token"] == case["ids"]


def test_models_say_what_they_offer(embedded):
    """The engine asks a model with the protocols (``models/protocol.py``), not ``hasattr``:
    our Llama steps a layer at a time and batches rows of many requests."""
    from mlx_entropix.models.protocol import LayerSteps, SharedBatch

    assert isinstance(embedded.model, LayerSteps) and isinstance(embedded.model, SharedBatch)
    assert not isinstance(object(), LayerSteps)
