"""The shape of the house: layers by concern, no import circles, no hidden upward imports, small rooms.

Read from the package's own source with ``ast``, so a new import that breaks
the layering fails here with the file and line, not in a reviewer's head.
docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import skfairtune

PACKAGE = Path(skfairtune.__file__).parent

#: Lowest first: a module may import modules of its own layer or lower, never higher.
LAYERS = (
    ("exceptions", "_legacy", "_utils"),
    ("metrics",),
    ("scorers", "reports"),
    ("_images",),
    ("datasets",),
    ("backbone",),
    ("masks",),
    ("_training",),
    ("callbacks", "classifier"),
    ("distributed",),
    ("search",),
    ("plotting", "compare", "export"),
    ("demo", "worker"),
    ("cli", "__main__"),
)
#: Deferred only because they are heavy or optional: importing them inside a function is allowed.
HEAVY = {"torch", "timm", "peft", "pydicom", "matplotlib", "sqlalchemy", "psycopg", "scipy", "skorch",
         "optuna_dashboard", "tifffile", "fairlearn", "safetensors", "pandas", "sklearn", "tqdm", "PIL"}
#: Modules whose job is to import lazily: the package root (``import skfairtune`` loads no torch),
#: the command line and the worker commands it builds its parser from (``skfairtune --help``
#: and a worker's start do not import the search's torch stack).
LAZY_BY_DESIGN = {"skfairtune", "skfairtune.cli", "skfairtune.__main__", "skfairtune.worker"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    if module == "skfairtune":
        return len(LAYERS)
    head = module.split(".")[1]
    for index, names in enumerate(LAYERS):
        if head in names:
            return index
    raise AssertionError(f"{module} belongs to no layer of LAYERS: add its subpackage or module there")


def _targets(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("skfairtune"):
        return []
    found = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
    return found or ([target] if target in MODULES else [])


def _imports():
    """(importer, imported, line, inside a function) for every import of a package module."""
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        nested = {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for sub in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node):
                    if target != module:
                        yield module, target, node.lineno, id(node) in nested


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_import_circles():
    graph = defaultdict(set)
    for importer, imported, _, _ in _imports():
        if importer != "skfairtune" and not (imported == "skfairtune"):
            graph[importer].add(imported)
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    assert circles == []


def test_no_upward_imports():
    upward = [f"{importer} (layer {_layer(importer)}) imports {imported} (layer {_layer(imported)}), line {line}"
              for importer, imported, line, _ in _imports()
              if importer != "skfairtune" and imported != "skfairtune" and _layer(imported) > _layer(importer)]
    assert upward == []


def test_imports_inside_functions_only_defer_heavy_dependencies():
    hidden = [f"{importer}:{line} imports {imported} inside a function"
              for importer, imported, line, inside in _imports() if inside and importer not in LAZY_BY_DESIGN]
    assert hidden == []


def test_deferred_third_party_imports_are_heavy_ones():
    offenders = []
    for module, path in MODULES.items():
        if module in LAZY_BY_DESIGN:
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                for name in names:
                    top = name.split(".")[0]
                    if top and top != "skfairtune" and top not in HEAVY and top not in _STDLIB_DEFERRED:
                        offenders.append(f"{module}:{node.lineno} defers `{name}`")
    assert offenders == []


# The standard library is cheap; deferring it is harmless and sometimes avoids a circular
# import in the interpreter's own start-up (e.g. inspect), so it is not policed.
_STDLIB_DEFERRED = {"inspect", "importlib", "json", "os", "sys", "time", "warnings", "signal", "threading",
                    "multiprocessing", "concurrent", "subprocess", "tempfile", "shutil", "socket", "platform",
                    "traceback", "logging", "math", "re", "pickle", "io", "hashlib", "fnmatch", "contextlib",
                    "dataclasses", "functools", "itertools", "collections", "pathlib", "random", "uuid",
                    "datetime", "getpass", "atexit", "errno", "gc", "resource", "select", "struct", "typing",
                    "numbers", "copy", "weakref", "textwrap", "string", "argparse", "queue", "ctypes", "zlib",
                    "base64", "urllib", "html", "http", "csv", "gzip", "glob", "stat", "types", "abc",
                    "optuna", "numpy", "joblib", "torchvision"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_functions_stay_small(module):
    path = MODULES[module]
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path.name}: {len(lines)} lines"
    tree = ast.parse(path.read_text())
    long = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            code = {n.lineno for stmt in body for n in ast.walk(stmt) if hasattr(n, "lineno")}
            if len(code) > MAX_FUNCTION_LINES:
                long.append(f"{node.name} ({len(code)} lines of code)")
    assert long == []


def test_top_level_stays_small():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= 15, top


MODEL_MODULE = "skfairtune._training._net"


def _modules_on_x_path(X, y) -> list[str]:
    """Modules, in call order, of every skfairtune call that receives ``X`` or something made from it.

    "Made from it" is followed by identity: whatever a recorded call returns is
    tracked too (the checked input, the converted images, the trainer).
    """
    import sys

    from skfairtune import FairTuneClassifier

    tracked, alive, recorded, path = {id(X)}, [X], set(), []

    def follow(frame, event, arg):
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("skfairtune") or MODEL_MODULE in path:
            return  # followed until X first reaches the network
        if event == "call":
            code = frame.f_code
            names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
            if any(id(frame.f_locals.get(name)) in tracked for name in names):
                path.append(module)
                recorded.add(id(frame))
        elif event == "return" and id(frame) in recorded and arg is not None:
            recorded.discard(id(frame))
            for value in (arg if isinstance(arg, tuple) else (arg,)):
                if isinstance(value, (bool, int, float, str, type(None))):
                    continue  # shared singletons and small ints would tag unrelated calls
                tracked.add(id(value))
                alive.append(value)  # keeps the id from being reused by another object

    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, max_epochs=1, batch_size=16, device="cpu",
                             model_kwargs=dict(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2),
                             random_state=0)
    sys.setprofile(follow)
    try:
        clf.fit(X, y)
    finally:
        sys.setprofile(None)
    return [m for i, m in enumerate(path) if i == 0 or path[i - 1] != m]


def test_x_reaches_the_model_through_one_conversion_with_few_returns():
    """Issue 23: X from ``fit`` goes checks -> one converter -> model, re-entering at most 4 modules."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (32, 16, 16, 3), dtype=np.uint8)
    modules = _modules_on_x_path(X, np.arange(32) % 2)
    returns = [m for i, m in enumerate(modules) if m in modules[:i]]
    assert modules[:3] == ["skfairtune.classifier", "skfairtune._training._trainer", "skfairtune._images._convert"]
    assert modules[-1] == MODEL_MODULE
    assert len(returns) <= 4, modules
