"""The package layers of ARCHITECTURE.md, read from the source with ``ast``.

* ground -- ``dunno`` (except ``dunno.cli``), ``evaluation.metrics``, ``evaluation.plots``:
  imports nothing above it;
* methods -- ``uncertainty``, ``generative``: import ground and themselves, never each other;
* top -- ``dunno.cli`` and the experiment runners in ``evaluation.benchmarks``.

Nothing imports the CLI, no module imports a private (``_name``) module or attribute of
another top-level package, there are no import cycles between modules (function-level imports
included: a lazy import hides a cycle, it does not remove it), and no library file is longer
than 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dunno", "evaluation", "uncertainty", "generative")
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


MODULES = _modules()


def layer(module: str) -> str:
    """``"ground"``, ``"methods"`` or ``"top"``."""
    if module == "dunno.cli" or module.startswith("dunno.cli."):
        return "top"
    if module == "evaluation.benchmarks" or module.startswith("evaluation.benchmarks."):
        return "top"
    if module.split(".")[0] in ("uncertainty", "generative"):
        return "methods"
    return "ground"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every import of ``module``
    (module-level and inside functions), restricted to this repository's packages. ``from
    pkg import name`` where ``pkg.name`` is a module counts as an import of that module."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    found.append((sub, None, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return [f for f in found if f[0].split(".")[0] in PACKAGES]


EDGES = {module: imports(module) for module in MODULES}


def _private(target: str, name: str | None) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in target.split(".")) or (
        name is not None and name.startswith("_") and not name.startswith("__")
    )


def test_the_scan_sees_the_packages():
    # the rules below are only as good as the scan: it must find the real modules and edges
    assert {"dunno.training", "uncertainty.ood", "generative", "evaluation.metrics"} <= set(MODULES)
    assert sum(len(v) for v in EDGES.values()) > 200
    assert layer("dunno.cli.ood") == layer("evaluation.benchmarks") == "top"
    assert layer("dunno.data.user") == layer("evaluation.plots") == "ground"
    assert layer("generative.latent.vae") == "methods"


def test_ground_imports_only_ground():
    bad = [f"{m}:{line} imports {t}" for m, edges in EDGES.items() if layer(m) == "ground"
           for t, _, line in edges if layer(t) != "ground"]
    assert not bad, "\n".join(bad)


def test_uncertainty_and_generative_never_import_each_other():
    bad = [f"{m}:{line} imports {t}" for m, edges in EDGES.items() if layer(m) == "methods"
           for t, _, line in edges
           if layer(t) == "top" or (layer(t) == "methods" and t.split(".")[0] != m.split(".")[0])]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_cli():
    bad = [f"{m}:{line} imports {t}" for m, edges in EDGES.items() if layer(m) != "top"
           or not m.startswith("dunno.cli") for t, _, line in edges
           if t == "dunno.cli" or t.startswith("dunno.cli.")]
    assert not bad, "\n".join(bad)


def test_no_private_imports_across_top_level_packages():
    bad = [f"{m}:{line} imports {t}{'.' + n if n else ''}" for m, edges in EDGES.items()
           for t, n, line in edges
           if t.split(".")[0] != m.split(".")[0] and _private(t, n)]
    assert not bad, "\n".join(bad)


def test_no_subpackage_imports_a_siblings_private_module():
    # generative.latent must not reach into generative.autoregressive._checks, etc.
    def owner(module: str) -> str:
        return ".".join(module.split(".")[:2])

    bad = [f"{m}:{line} imports {t}" for m, edges in EDGES.items() for t, n, line in edges
           if t.split(".")[0] == m.split(".")[0] and owner(t) != owner(m)
           and t.count(".") >= 2 and _private(t, n)]
    assert not bad, "\n".join(bad)


def _cycles() -> list[list[str]]:
    graph = {m: sorted({t for t, _, _ in edges if t in MODULES and t != m})
             for m, edges in EDGES.items()}
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_library_file_over_500_lines(module):
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(REPO)} has {lines} lines"
