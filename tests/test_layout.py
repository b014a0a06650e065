"""The package's shape: no import cycle, no private name imported across modules.

Parsed with ast over src/mnistlite, so nothing is imported. Module-level
imports must form no cycle at all. Imports deferred into functions may close
a cycle only inside the core that builds a model and trains it (config ->
models -> pretrained weights -> engine -> config: the lazy imports there keep
`import mnistlite` light); every layer above it (runs, reports, tuning,
search, cli, ...) is in no cycle, deferred or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "mnistlite"
# Deferred imports may close a cycle only among these (see the docstring).
CORE = ("mnistlite.config", "mnistlite.modelinfo", "mnistlite.models", "mnistlite.engine")
# Private names imported across modules that this test still tolerates (none).
KNOWN_PRIVATE: set[tuple[str, str]] = set()


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def imports(mods, top_level_only: bool):
    """{module: {(imported module, name or None)}} for imports of mnistlite modules."""
    found: dict[str, set[tuple[str, str | None]]] = {}
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else ast.walk(tree)
        for node in nodes:
            targets: list[tuple[str, str | None]]
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names if a.name.startswith("mnistlite")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                if not name.startswith("mnistlite"):
                    continue
                targets = [
                    (f"{name}.{a.name}", None) if f"{name}.{a.name}" in mods else (name, a.name) for a in node.names
                ]
            else:
                continue
            found.setdefault(mod, set()).update(t for t in targets if t[0] in mods and t[0] != mod)
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def graph(top_level_only: bool) -> dict[str, set[str]]:
    return {m: {t for t, _ in ts} for m, ts in imports(modules(), top_level_only).items()}


def test_module_level_imports_have_no_cycle():
    assert cycles(graph(top_level_only=True)) == []


def test_deferred_imports_close_cycles_only_inside_the_core():
    def core(m: str) -> bool:
        return any(m == c or m.startswith(c + ".") for c in CORE)

    outside = [c for c in cycles(graph(top_level_only=False)) if not all(core(m) for m in c)]
    assert outside == []


def test_no_private_name_is_imported_across_modules():
    found = {
        (mod, name)
        for mod, ts in imports(modules(), top_level_only=False).items()
        for _, name in ts
        if name and name.startswith("_") and not name.startswith("__")
    }
    assert found - KNOWN_PRIVATE == set()


def test_the_checks_catch_what_they_are_for():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
