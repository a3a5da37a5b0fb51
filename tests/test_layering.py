"""Structural rules for the source tree, checked by reading the code with ``ast``.

The package layering (which package may import which) is written out below as
``ALLOWED``; the test fails on any import edge not in that table and on any
cycle between packages. A few further house rules are checked here too: argparse
only in the CLI, no private names imported across modules, no overlong modules,
and a reason comment on every import made inside a function.
"""

from __future__ import annotations

import ast
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "fewops"
FACE = "__face__"  # top-level modules: fewops/__init__.py and any fewops/x.py

ALL = frozenset(
    {
        "graph",
        "codes",
        "cost",
        "sim",
        "hw",
        "data",
        "models",
        "io",
        "nn",
        "network",
        "train",
        "methods",
        "report",
        "cli",
        "parallel",
    }
)

# Which packages each package may import (besides itself). The direction is
# codes -> graph <- {cost, sim, hw}; nn/methods -> codes; cli, report -> everything;
# data and models are leaves.
ALLOWED: dict[str, frozenset[str]] = {
    # The shift-add IR: nothing below it.
    "graph": frozenset(),
    # Cost counts are pure functions of a graph; cost must never import codes.
    "cost": frozenset({"graph"}),
    # Evaluating a graph needs only the graph.
    "sim": frozenset({"graph", "parallel"}),
    # Codes build graphs and score candidate codes by their cost; a code's exact matrix is what
    # its graph computes (fewops.sim.graph_matrix), so codes may evaluate graphs too.
    "codes": frozenset({"graph", "cost", "sim", "parallel"}),
    # Verilog emission and verification: graphs, their simulation (for test
    # vectors) and their cost (for reports); never models, data or nn.
    "hw": frozenset({"graph", "sim", "cost", "network"}),
    "data": frozenset(),
    "models": frozenset(),
    # The torch-free integer network (typed steps, simulator, calibration, saving): reads coded
    # layers' graphs and evaluates them; never torch, nn or files of other packages.
    "network": frozenset({"graph", "sim", "cost"}),
    # The one parallel map (joblib/loky locally, Dask on a cluster): a leaf that imports no
    # fewops package, so codes, sim, methods, report and cli can all run their tasks through it.
    "parallel": frozenset(),
    # Coded modules, folding and tracing into graphs, and the network simulators. nn never
    # touches files: saving and loading go through io (below), which imports nn, not back.
    "nn": frozenset({"graph", "codes", "cost", "sim", "network"}),
    # File formats. io/tensors.py is a plain tensor container (safetensors + atomic writes).
    # io/coded_model.py is the on-disk form of a coded torch model: it saves CodedLinear and
    # CodedConv2d modules (nn) with their codes (CodedMatrix) and graphs, rebuilds them, and
    # saves the calibrated network.Network beside them. So io -> {graph, codes, nn, network}
    # and nn must not import io (that would be a cycle); train and the CLI save through io.
    "io": frozenset({"graph", "codes", "nn", "network"}),
    "train": frozenset({"nn", "io", "data", "models"}),
    "methods": frozenset(
        {"nn", "codes", "graph", "cost", "sim", "train", "data", "io", "models", "parallel"}
    ),
    "report": ALL - {"report", "cli"},
    "cli": ALL - {"cli"},
    # fewops/__init__.py may expose anything (lazily).
    FACE: ALL,
}


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    line: int
    module: str  # the fewops module imported, dotted, e.g. "fewops.graph.graph"
    in_function: bool


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _exists(dotted: str) -> bool:
    base = SRC.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _resolve_from(path: Path, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    package = _module_name(path).split(".")
    if not _is_package(path):
        package = package[:-1]
    if node.level > 1:
        package = package[: -(node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


class _Collector(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.depth = 0
        self.found: list[Import] = []

    def _func(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _func

    def _add(self, line: int, module: str) -> None:
        if module == "fewops" or module.startswith("fewops."):
            self.found.append(Import(self.path, line, module, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve_from(self.path, node)
        if base is None:
            return
        targets = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            # `from fewops.x import y` where y is a submodule imports fewops.x.y.
            targets.append(sub if _exists(sub) else base)
        for target in dict.fromkeys(targets):
            self._add(node.lineno, target)


def _imports(path: Path) -> list[Import]:
    collector = _Collector(path)
    collector.visit(ast.parse(path.read_text(), str(path)))
    return collector.found


def _package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return FACE
    if len(parts) == 2 and not (PKG / parts[1]).is_dir():
        return FACE
    return parts[1]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _edges() -> list[tuple[str, str, Import]]:
    edges = []
    for path in _modules():
        src = _package_of(_module_name(path))
        for imp in _imports(path):
            dst = _package_of(imp.module)
            if dst != src:
                edges.append((src, dst, imp))
    return edges


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_packages_in_the_table_are_the_packages_on_disk():
    on_disk = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert on_disk == set(ALL)
    assert set(ALLOWED) == set(ALL) | {FACE}


def test_the_allowed_table_has_no_cycle():
    table = {k: set(v) for k, v in ALLOWED.items() if k != FACE}
    assert _find_cycle(table) is None


def test_every_import_between_packages_is_allowed():
    bad = [
        f"{_rel(imp.path)}:{imp.line}: {src} -> {dst} (imports {imp.module})"
        for src, dst, imp in _edges()
        if dst not in ALLOWED[src]
    ]
    assert not bad, "imports not allowed by the layering table:\n" + "\n".join(bad)


def test_the_actual_package_graph_has_no_cycle():
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for src, dst, imp in _edges():
        if src == FACE or dst == FACE:
            continue
        graph.setdefault(src, set()).add(dst)
        where.setdefault((src, dst), imp)
    cycle = _find_cycle(graph)
    if cycle:
        steps = [
            f"{a} -> {b} ({_rel(where[a, b].path)}:{where[a, b].line})"
            for a, b in zip(cycle, cycle[1:], strict=False)
        ]
        pytest.fail("cycle between packages:\n" + "\n".join(steps))


def _stdlib_imports(path: Path, name: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            if any(a.name == name or a.name.startswith(name + ".") for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == name or node.module.startswith(name + "."):
                lines.append(node.lineno)
    return lines


def test_argparse_only_in_the_cli():
    cli = PKG / "cli"
    bad = [
        f"{_rel(path)}:{line}"
        for path in _modules()
        if cli not in path.parents
        for line in _stdlib_imports(path, "argparse")
    ]
    assert not bad, "argparse imported outside src/fewops/cli:\n" + "\n".join(bad)


def _python_files() -> list[Path]:
    files = []
    for top in ("src", "tests", "benchmarks"):
        if (ROOT / top).is_dir():
            files += [p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_names_imported_from_other_modules():
    bad = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if _private(alias.name):
                        bad.append(f"{_rel(path)}:{node.lineno}: imports {alias.name}")
    assert not bad, "private names imported from another module:\n" + "\n".join(bad)


MAX_LINES = 600


def test_no_module_is_too_long():
    bad = []
    for path in _modules():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            bad.append(f"{_rel(path)}: {n} lines")
    assert not bad, f"modules over {MAX_LINES} lines:\n" + "\n".join(bad)


def _comment_lines(path: Path) -> set[int]:
    with path.open("rb") as f:
        return {
            tok.start[0]
            for tok in tokenize.tokenize(f.readline)
            if tok.type == tokenize.COMMENT and tok.string.lstrip("#").strip()
        }


def _function_imports(path: Path) -> list[ast.stmt]:
    found: list[ast.stmt] = []

    def walk(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and inside:
                found.append(child)
            funcy = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            walk(child, inside or funcy)

    walk(ast.parse(path.read_text(), str(path)), False)
    return found


def test_every_import_inside_a_function_says_why():
    bad = []
    for path in _modules():
        comments = _comment_lines(path)
        lines = path.read_text().splitlines()
        covered: set[int] = set()  # last lines of imports that have their reason
        for node in sorted(_function_imports(path), key=lambda n: n.lineno):
            end = node.end_lineno or node.lineno
            # A comment on the import's own lines or on the line right above it; an import right
            # below one that has its reason shares it (one comment for a block of imports).
            if comments.intersection(range(node.lineno - 1, end + 1)) or node.lineno - 1 in covered:
                covered.add(end)
                continue
            bad.append(f"{_rel(path)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, (
        "imports inside functions without a reason comment "
        "(say why, e.g. '# heavy: torch', or move them to the top):\n" + "\n".join(bad)
    )
