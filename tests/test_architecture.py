"""The module graph of ``ds2ta_ref``: no import circles, no import running back up a layer,
and nothing private (``_name``) reached across modules.

The graph is drawn statically (``ast``, every ``import`` anywhere in a module, including
the lazy ones inside functions). ``LAYERS`` is the intended order, lowest first: a module
may import modules of its own layer or below, never above. Draw the graph with::

    python tests/test_architecture.py

Importing a private module of the package (``_checks``) is allowed; reaching a private
*name* of another module (``layers._conv_forward``, ``from .train import _save``) is not:
a core another module needs is public under a documented name (``*_unchecked``).
"""

from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "ds2ta_ref"

#: The layers of the package, lowest first (names without the ``ds2ta_ref.`` prefix; a
#: package such as ``golden`` covers its submodules ``golden.*``). A new module must be
#: placed here, which is the point: its place in the order is a design decision.
LAYERS: list[tuple[str, ...]] = [
    ("_checks", "_startup", "_version", "config", "surrogate", "devices", "parallel"),  # no package imports at all
    ("names", "checkpoint", "data", "energy"),  # names/shape checks, file I/O, data sets, energy model
    ("layers", "lif", "nsad", "cifar", "optim", "fingerprint"),  # kernels, a data set, the optimizer, data prints
    ("tasa",),  # TASA's weight gradient uses layers.rows_product
    ("bnlif",),  # BatchNorm + LIF unit
    ("sps", "attention", "mlp"),  # the blocks
    ("params",),  # names, shapes and initialization of the whole model (asks the blocks)
    ("memory",),  # the memory estimate of a training step (from the parameter shapes)
    ("model", "spikformer"),  # the transformer; Spikformer checkpoint import
    ("gradcheck",),  # named gradient checks of the kernels and the model
    ("golden", "plotting", "exercises", "recipe", "runs"),  # reference tensors, figures, course checks, run library
    ("train", "ablation"),  # the NumPy trainer, the ablation study
    ("torch.functional",),  # the PyTorch port, bottom up
    ("torch.model",),
    ("torch.sync_batchnorm", "torch.syncbn", "torch.crosscheck", "torch.train"),
    ("torch.distributed",),
    ("torch", "cli"),  # ds2ta_ref.torch's __init__; the command line
    ("", "__main__"),  # ds2ta_ref's __init__ (the package's public names), python -m ds2ta_ref
]


# ----------------------------------------------------------------------------- drawing the graph


def discover(root: str = ROOT) -> dict[str, str]:
    """``{module name relative to the package ("" for its __init__): path}`` of every module."""
    modules = {}
    base = os.path.join(root, PACKAGE)
    for folder, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), base)[:-3].replace(os.sep, ".")
                name = rel[: -len("__init__")].rstrip(".") if rel.endswith("__init__") else rel
                modules[name] = os.path.join(folder, f)
    return modules


def _package_of(module: str, is_package: bool) -> str:
    if is_package:
        return module
    return module.rpartition(".")[0]


def _resolve(target: str, names: list[str], modules: dict) -> list[str]:
    """The modules an import of ``names`` from ``target`` (relative name) loads: a submodule
    when the name is one, else ``target`` itself."""
    out = []
    for n in names:
        sub = f"{target}.{n}" if target else n
        if sub in modules:
            out.append(sub)
        elif target in modules:
            out.append(target)
    return out


def imports_of(module: str, source: str, modules: dict) -> tuple[set[str], list[tuple[str, str, int]]]:
    """``(imported package modules, private uses)`` of one module's source.

    Private uses are ``(other module, name, line)`` for ``from other import _name`` and
    ``alias._name`` where ``alias`` is bound to another package module."""
    tree = ast.parse(source)
    is_package = (
        module == ""
        or module in {m.rpartition(".")[0] for m in modules if "." in m}
        or (module and any(k.startswith(module + ".") for k in modules))
    )
    here = _package_of(module, is_package)
    edges: set[str] = set()
    private: list[tuple[str, str, int]] = []
    aliases: dict[str, str] = {}  # local name -> package module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".") if here else []
                up = node.level - 1
                if up > len(parts):
                    continue
                base = parts[: len(parts) - up] if up else parts
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                target = node.module[len(PACKAGE) + 1 :]
            else:
                continue
            if target not in modules and not any(f"{target}.{a.name}" in modules for a in node.names):
                continue
            names = [a.name for a in node.names]
            for a in node.names:
                sub = f"{target}.{a.name}" if target else a.name
                if sub in modules:
                    aliases[a.asname or a.name] = sub
                elif a.name.startswith("_") and not a.name.startswith("__") and target != module:
                    private.append((target, a.name, node.lineno))
            edges.update(_resolve(target, names, modules))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PACKAGE or a.name.startswith(PACKAGE + "."):
                    target = a.name[len(PACKAGE) + 1 :]
                    if target in modules:
                        edges.add(target)
                        if a.asname:
                            aliases[a.asname] = target
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and aliases[node.value.id] != module
        ):
            private.append((aliases[node.value.id], node.attr, node.lineno))
    edges.discard(module)
    return edges, private


def graph(root: str = ROOT) -> tuple[dict[str, set[str]], dict[str, list]]:
    """``({module: imported modules}, {module: private uses})`` of the whole package."""
    modules = discover(root)
    edges, private = {}, {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            edges[name], private[name] = imports_of(name, f.read(), modules)
    return edges, private


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The layer of ``module``: its own entry, or that of the closest enclosing package."""
    name = module
    while True:
        for i, layer in enumerate(layers):
            if name in layer:
                return i
        if not name:
            return None
        name = name.rpartition(".")[0]
        if not name:  # a top-level module not in the table (the package's "" is not its parent)
            return None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle ``[a, b, ..., a]``, or ``None``."""
    color: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(u):
        color[u] = 1
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if color.get(v) == 1:
                return stack[stack.index(v) :] + [v]
            if v not in color:
                found = visit(v)
                if found:
                    return found
        stack.pop()
        color[u] = 2
        return None

    for u in sorted(edges):
        if u not in color:
            found = visit(u)
            if found:
                return found
    return None


def upward_imports(edges: dict[str, set[str]], layers=LAYERS) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs where the imported module sits in a higher layer."""
    return sorted(
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if layer_of(b, layers) is not None
        and layer_of(a, layers) is not None
        and layer_of(b, layers) > layer_of(a, layers)
    )


def _core(edges: dict) -> dict:
    """The graph without ``ds2ta_ref.torch`` (the PyTorch port)."""

    def keep(m):
        return not (m == "torch" or m.startswith("torch."))

    return {a: {b for b in t if keep(b)} for a, t in edges.items() if keep(a)}


def _show(module: str) -> str:
    return f"{PACKAGE}.{module}" if module else PACKAGE


# ----------------------------------------------------------------------------- the checks


EDGES, PRIVATE = graph()


def test_every_module_has_a_layer():
    missing = sorted(_show(m) for m in EDGES if layer_of(m) is None)
    assert not missing, f"place these modules in LAYERS of tests/test_architecture.py: {missing}"


def test_core_has_no_import_circle():
    assert find_cycle(_core(EDGES)) is None, " -> ".join(map(_show, find_cycle(_core(EDGES))))


def test_core_has_no_upward_import():
    up = upward_imports(_core(EDGES))
    assert not up, [f"{_show(a)} imports {_show(b)} (a higher layer)" for a, b in up]


def test_core_reaches_nothing_private_across_modules():
    core = _core({m: set() for m in PRIVATE})
    uses = [f"{_show(m)}:{line} uses {_show(t)}.{n}" for m in core for t, n, line in PRIVATE[m]]
    assert not uses, uses


def test_whole_package_including_torch_is_clean():
    cycle = find_cycle(EDGES)
    up = upward_imports(EDGES)
    uses = [(m, t, n) for m in PRIVATE for t, n, _ in PRIVATE[m]]
    assert cycle is None and not up and not uses, (cycle, up, uses)


def test_the_graph_is_not_empty():
    # the blocks import the kernels, the model the blocks, params the blocks (for their shapes)
    assert {"bnlif", "layers", "lif"} <= EDGES["sps"] | EDGES["bnlif"]
    assert {"sps", "attention", "mlp", "params", "names"} <= EDGES["model"]
    assert {"sps", "attention", "mlp", "nsad"} <= EDGES["params"]
    assert "checkpoint" not in EDGES["params"] and "params" not in EDGES["attention"]


# ----------------------------------------------------------------------------- the checks can fail


def test_find_cycle_finds_a_synthetic_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_upward_imports_rejects_a_synthetic_upward_edge():
    layers = [("low",), ("mid",), ("high",)]
    assert upward_imports({"low": {"high"}, "high": {"mid"}}, layers) == [("low", "high")]
    assert upward_imports({"high": {"low", "mid"}}, layers) == []


def test_imports_of_sees_lazy_imports_and_private_uses():
    modules = {"": "", "a": "", "b": "", "pkg": "", "pkg.c": ""}
    source = (
        "from . import b\n"
        "from .b import _hidden, visible\n"
        "def f():\n"
        "    from .pkg import c\n"
        "    return b._core(c._other, b.public)\n"
    )
    edges, private = imports_of("a", source, modules)
    assert edges == {"b", "pkg.c"}
    assert sorted((t, n) for t, n, _ in private) == [("b", "_core"), ("b", "_hidden"), ("pkg.c", "_other")]
    # relative imports from inside a subpackage resolve against it
    edges, private = imports_of("pkg.c", "from .. import a as _a\nx = _a.value\n", modules)
    assert edges == {"a"} and private == []


def test_layer_of_covers_subpackages():
    assert layer_of("golden.schema") == layer_of("golden")
    assert layer_of("nonexistent_module") is None


if __name__ == "__main__":  # draw the graph, layer by layer
    for i in range(len(LAYERS)):
        for m in sorted(m for m in EDGES if layer_of(m) == i):
            print(f"{i:2d} {_show(m):34s} -> {', '.join(sorted(EDGES[m])) or '-'}")
    print("circle:", find_cycle(EDGES), "| upward:", upward_imports(EDGES) or "none")
    sys.exit(0)
