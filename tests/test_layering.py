"""The house stays as built (DESIGN.md): imports point down (app -> decoder -> lewm_core, and
inside lewm_core the command line above the library's subpackages), the product never imports
the research, benchmark, recipe or test code, the library's modules import each other without a
cycle, and nothing edits sys.path. Read from the source with `ast`, every import counted, those
inside functions too. Each rule is also run on a planted violation, which it must find."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_THE_PRODUCT = ("research", "bench", "recipes", "tests")
# What each layer must not import, by top-level name or module prefix.
LAYERS_ABOVE = {
    "lewm_core": ("decoder", "app"),  # the decoder registers its commands from above
    "decoder": ("app",),
}
LIBRARY_SUBPACKAGES = ("analysis", "data", "envs", "planning", "training", "world_model")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module name `path` imports (absolute imports; relative ones resolved)."""
    found = set()
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(((package or _module_name(path)).split("."))[: 1 - node.level])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _graph(package: str) -> dict[str, set[str]]:
    return {
        _module_name(p): _imports(p)
        for p in sorted((ROOT / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_product_never_imports_research_bench_recipes_or_tests() -> None:
    wrong = [
        (module, imported)
        for package in ("lewm_core", "decoder", "app")
        for module, names in _graph(package).items()
        for imported in names
        if _top(imported) in OUTSIDE_THE_PRODUCT
    ]
    assert not wrong, wrong


def upward_imports(graphs: dict[str, dict[str, set[str]]]) -> set[tuple[str, str]]:
    """(module, imported) pairs that point up: lewm_core into decoder or app, decoder into app,
    a library subpackage (or a top-level library module) into `lewm_core.cli`."""
    found = set()
    for package, graph in graphs.items():
        above = LAYERS_ABOVE.get(package, ())
        for module, names in graph.items():
            found |= {(module, n) for n in names if _top(n) in above}
            launcher = module.startswith("lewm_core.cli") or module == "lewm_core.__main__"
            if package == "lewm_core" and not launcher:
                found |= {(module, n) for n in names if n.startswith("lewm_core.cli")}
    return found


def test_imports_point_down() -> None:
    graphs = {p: _graph(p) for p in ("lewm_core", "decoder")}
    assert not upward_imports(graphs), sorted(upward_imports(graphs))
    planted = {
        "lewm_core": {"lewm_core.shipping": {"decoder"}, "lewm_core.envs.base": {"lewm_core.cli"}},
        "decoder": {"decoder.train": {"app.ui"}},
    }
    assert upward_imports(planted) == {
        ("lewm_core.shipping", "decoder"),
        ("lewm_core.envs.base", "lewm_core.cli"),
        ("decoder.train", "app.ui"),
    }


def test_the_cli_reaches_the_decoder_from_above() -> None:
    """`lewm decoder-train` is there although lewm_core never imports the decoder: pyproject's
    entry point registers it (and an editable install has read pyproject)."""
    from lewm_core.cli.main import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert "decoder-train" in commands and "train" in commands


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the modules of `graph`, as a path, or None."""
    modules = set(graph)
    edges = {m: {n for n in graph[m] if n in modules and n != m} for m in graph}
    # a package's __init__ re-exporting its submodules is not a cycle of ideas
    for m in edges:
        edges[m] = {n for n in edges[m] if not m.startswith(n + ".")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return [*path[path.index(n) :], n] if n in path else [m, n]
            if n not in state and (cycle := visit(n, [*path, n])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m, [m])):
            return cycle
    return None


def test_the_library_has_no_import_cycle() -> None:
    cycle = find_cycle(_graph("lewm_core") | _graph("decoder"))
    assert cycle is None, " -> ".join(cycle)
    planted = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert find_cycle(planted) in (["a.x", "a.y", "a.z", "a.x"], ["a.y", "a.z", "a.x", "a.y"])


def path_edits(source: str) -> list[str]:
    """The lines of `source` that change the import path: sys.path.insert/append/extend, an
    assignment to sys.path, pytest's monkeypatch.syspath_prepend."""
    found = []
    for node in ast.walk(ast.parse(source)):
        text = ast.unparse(node) if isinstance(node, ast.Attribute | ast.Assign) else ""
        if isinstance(node, ast.Attribute) and (
            (node.attr in ("insert", "append", "extend") and ast.unparse(node.value) == "sys.path")
            or node.attr == "syspath_prepend"
        ):
            found.append(text)
        elif isinstance(node, ast.Assign) and any(
            ast.unparse(t).startswith("sys.path") for t in node.targets
        ):
            found.append(text)
    return found


def test_no_sys_path_edits() -> None:
    edits = {}
    for folder in ("lewm_core", "decoder", "app", "tests", "bench", "research", "recipes"):
        for path in (ROOT / folder).rglob("*.py"):
            if lines := path_edits(path.read_text()):
                edits[str(path.relative_to(ROOT))] = lines
    assert not edits, edits
    planted = (
        "import sys\nsys.path.insert(0, 'x')\nsys.path = []\nmonkeypatch.syspath_prepend('y')\n"
    )
    assert len(path_edits(planted)) == 3
