"""The package's layering, read from the source: no import cycle, no lower layer importing a higher one.

docs/architecture.md draws the layers; this keeps the drawing true. Only module-level imports
count (an import inside a function is a deliberate late binding, and ``TYPE_CHECKING`` blocks
are for annotations); ``from package import submodule`` is an edge to the submodule.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

pytestmark = pytest.mark.timeout(60)

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "threadswoole"

# Lowest first. A module's layer is its sub-package's; top-level modules are named here, and
# any other top-level module is public API (the highest layer).
FOUNDATION = {"errors", "constants", "_context", "_arguments", "_aliases", "_forking"}
LAYERS = {"protocol": 1, "loop": 2, "state": 3, "connections": 4, "ipc": 5,
          "workers": 6, "modes": 7}
PUBLIC = 8
PUBLIC_PACKAGES = {"server", "http", "websocket", "redis", "client", "serve", "process", "sharing"}


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("threadswoole", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imported(module: str, path: pathlib.Path) -> set[str]:
    """The threadswoole modules ``module`` imports at module level."""
    is_package = path.name == "__init__.py"
    statements: list[ast.stmt] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and not _is_type_checking(node):
            statements += node.body + node.orelse
        elif isinstance(node, ast.Try):
            statements += node.body
        else:
            statements.append(node)
    out: set[str] = set()
    for node in statements:
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            submodules = {f"{source}.{alias.name}" for alias in node.names} & MODULES.keys()
            out.update(submodules)
            if len(submodules) < len(node.names):
                out.add(source)
    return {name for name in out if name in MODULES and name != module}


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return PUBLIC
    if parts[1] in FOUNDATION:
        return 0
    return LAYERS.get(parts[1], PUBLIC)


def test_the_package_is_read() -> None:
    assert "threadswoole.connections.hot_path" in MODULES
    assert "threadswoole.loop.reactor" in GRAPH["threadswoole.connections.hot_path"]
    assert len(MODULES) > 100


def test_every_sub_package_has_a_layer() -> None:
    """A new sub-package is placed in the table on purpose, not by falling through to PUBLIC."""
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert packages - LAYERS.keys() - PUBLIC_PACKAGES == set()
    assert layer("threadswoole.connections.hot_path") > layer("threadswoole.loop.reactor") \
        > layer("threadswoole.protocol.codec") > layer("threadswoole.errors")


def test_no_import_cycle() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert cycles == []


def test_no_lower_layer_imports_a_higher_one() -> None:
    upward = sorted(f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
                    for module, targets in GRAPH.items() for target in targets
                    if layer(target) > layer(module) and target != "threadswoole")
    assert upward == []


def test_each_package_names_its_own_layer() -> None:
    """A package's docstring that opens "Layer N" names the layer this table gives it (they
    drifted apart once: four packages named the layer below their own)."""
    import re

    named = {}
    for package in LAYERS.keys() | PUBLIC_PACKAGES:
        init = PACKAGE / package / "__init__.py"
        if init.is_file():
            found = re.search(r"\bLayer (\d+)\b", ast.get_docstring(ast.parse(init.read_text())) or "")
            if found:
                named[package] = int(found.group(1))
    assert named.keys() >= LAYERS.keys()
    assert {package: layer for package, layer in named.items()
            if layer != LAYERS.get(package, PUBLIC)} == {}
