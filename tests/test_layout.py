"""The package's shape: one layer order over every import, no cycle, no private name across modules.

Parsed with ast over src/mnistlite, so nothing is imported. Every import counts, the ones
deferred into functions too: a deferred import still runs the imported module, so it ties
the two together as much as a top-level one. Importing `a.b.c` also runs the `__init__` of
each package above it (`a.b`), and that runs the `__init__`'s own imports, so it counts as an
import of those `__init__` modules as well (except from inside the package, which is
already being initialised).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "mnistlite"

# Lowest first. A module may import from its own layer or any layer below, never above.
# Within a layer, imports are allowed as long as they form no cycle.
LAYERS = (
    ("errors", "challenge"),  # the rules and the one error type
    ("config", "config_files"),  # the run's settings and the TOML files that hold them
    ("data", "augment", "fast"),  # tensors in, tensors out: the data set, augmentation, compiled loops
    ("models", "modelinfo"),  # the zoo, users' model files, parameter tables
    ("engine",),  # one run: parts, the epoch loop, checkpoints
    ("runs",),  # run folders, many runs planned and executed
    ("search", "reports", "deploy", "tuning_file", "tuning", "bench"),  # what is built on runs
    ("api",),  # the Python front door
    ("cli", "__main__", "starter"),  # the command line; starter holds templates `init` copies
)
# Private names imported across modules that this test still tolerates (none).
KNOWN_PRIVATE: set[tuple[str, str]] = set()


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def imports(mods: dict[str, tuple[Path, bool]]) -> dict[str, set[tuple[str, str | None]]]:
    """{module: {(imported module, name or None)}} for every import of a mnistlite module, at any depth."""
    found: dict[str, set[tuple[str, str | None]]] = {}
    for mod, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
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


def parents(target: str, importer: str) -> list[str]:
    """The package `__init__`s that importing `target` runs, leaving out the root and the importer's own packages."""
    parts = target.split(".")
    out = []
    for i in range(2, len(parts)):
        pkg = ".".join(parts[:i])
        if not (importer == pkg or importer.startswith(pkg + ".")):
            out.append(pkg)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {}
    for mod, ts in imports(mods).items():
        for t, _ in ts:
            edges.setdefault(mod, set()).update({t, *(p for p in parents(t, mod) if p in mods)})
    return edges


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
        for w in sorted(edges.get(v, ())):
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


def layer(module: str) -> int | None:
    """The layer of a module by its top-level name under mnistlite; None for the root package."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS")


def upward(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for a, bs in edges.items():
        la = layer(a)
        for b in bs:
            lb = layer(b)
            if la is not None and lb is not None and lb > la:
                out.append(f"{a} (layer {la}) imports {b} (layer {lb})")
    return sorted(out)


def test_every_module_has_a_layer():
    for m in modules():
        layer(m)


def test_no_import_goes_up_a_layer():
    assert upward(graph()) == []


def test_imports_have_no_cycle_deferred_ones_included():
    assert cycles(graph()) == []


def test_no_private_name_is_imported_across_modules():
    found = {
        (mod, name)
        for mod, ts in imports(modules()).items()
        for _, name in ts
        if name and name.startswith("_") and not name.startswith("__")
    }
    assert found - KNOWN_PRIVATE == set()


def test_package_docstrings_name_their_modules():
    """Each package's docstring names every module (and subpackage) in its folder, and no other."""
    for init in SRC.rglob("__init__.py"):
        folder = init.parent
        if folder == SRC:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        here = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        here |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
        missing = sorted(m for m in here if f"{m}.py" not in doc and f"{m}/" not in doc and f"`{m}`" not in doc)
        assert missing == [], f"{folder.name}/__init__.py docstring omits {missing}"


def test_the_checks_catch_what_they_are_for():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert upward({"mnistlite.config": {"mnistlite.engine.parts"}}) == [
        "mnistlite.config (layer 1) imports mnistlite.engine.parts (layer 4)"
    ]
    assert upward({"mnistlite.engine.parts": {"mnistlite.config"}}) == []
    # Importing a submodule runs its package's __init__, unless the importer is inside that package.
    assert parents("mnistlite.models.registry", "mnistlite.engine.parts") == ["mnistlite.models"]
    assert parents("mnistlite.models.registry", "mnistlite.models.seed_zoo") == []
