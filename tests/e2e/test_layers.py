"""The layer rule on the import graph (docs/architecture.md): every module of ``journey_stage``
imports only from its own package or the layers below; training and serving never import each
other; no import cycle, lazy imports inside functions included; nothing anywhere imports the
bare folder names (``features``, ``training``, ...) that the namespace replaced."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> (folder, layer rank); a module may import a package of a lower rank or its own.
PACKAGES = {
    "journey_stage.core": ("core", 0),
    "journey_stage.features": ("features", 1),
    "journey_stage.synthetic": ("synthetic", 1),
    "journey_stage.model": ("model", 2),
    "journey_stage.training": ("training", 3),
    "journey_stage.serving": ("serving", 3),
    "journey_stage": ("cli", 4),
}
BARE = {"features", "training", "serving", "journey", "core", "model", "synthetic", "cli"}


def product_modules() -> dict[str, Path]:
    mods = {}
    for pkg, (folder, _) in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = path
    return mods


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name imported anywhere in the file (top level and inside functions)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def package_of(module: str) -> str:
    return max((p for p in PACKAGES if module == p or module.startswith(p + ".")), key=len)


def graph() -> dict[str, set[str]]:
    mods = product_modules()
    return {m: {n for n in imported_names(p, m) if n in mods} for m, p in mods.items()}


def test_every_folder_maps_to_a_package_with_modules():
    mods = product_modules()
    for pkg in PACKAGES:
        assert any(package_of(m) == pkg for m in mods), f"no module found for {pkg}"
    assert len(mods) > 30


def test_no_upward_or_sideways_import():
    bad = []
    for mod, deps in graph().items():
        own = package_of(mod)
        for dep in deps:
            target = package_of(dep)
            if target != own and PACKAGES[target][1] >= PACKAGES[own][1]:
                bad.append(f"{mod} -> {dep}")
    assert bad == [], "imports against the layer rule:\n" + "\n".join(sorted(bad))


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycle():
    cycles = find_cycles(graph())
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def python_sources() -> list[Path]:
    folders = ["cli", "core", "features", "synthetic", "model", "training", "serving", "tests", "benchmarks"]
    return [p for f in folders for p in (ROOT / f).rglob("*.py")]


@pytest.mark.parametrize("kind", ["python", "notebooks"])
def test_nothing_imports_the_bare_folder_names(kind):
    import json

    found = []
    if kind == "python":
        sources = [(p, p.read_text()) for p in python_sources()]
    else:
        sources = [(p, "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code"))
                   for p in (ROOT / "notebooks").glob("*.ipynb")]
    for path, text in sources:
        try:
            tree = ast.parse(text)
        except SyntaxError:  # notebook magics
            tree = ast.parse("\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"{path.name}: import {a.name}" for a in node.names if a.name.split(".")[0] in BARE]
            elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in BARE:
                found.append(f"{path.name}: from {node.module}")
    assert found == []


def test_the_rule_checker_catches_violations(tmp_path):
    """The checks above are not vacuous: an upward import is seen in a module's imports."""
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from journey_stage.serving.batch import score_file\n")
    names = imported_names(path, "journey_stage.core.x")
    assert "journey_stage.serving.batch" in names
    assert PACKAGES[package_of("journey_stage.serving.batch")][1] > PACKAGES[package_of("journey_stage.core.x")][1]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
