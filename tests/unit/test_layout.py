"""The code's shape: no import cycles, and the engine knows nothing of the server or the wire."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PACKAGES = ("liaison", "session")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.lru_cache(maxsize=None)
def syntax_tree(path: Path) -> ast.Module:
    """``path`` parsed once for every test here (nothing in it is modified)."""
    return ast.parse(path.read_text(encoding="utf-8"))


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules of ours that ``path`` imports (at import time only, when ``top_level_only``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = syntax_tree(path)
    nodes = []
    if top_level_only:  # module body, including `if TYPE_CHECKING:` and try/except blocks at that level
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                nodes.append(node)
            elif isinstance(node, (ast.If, ast.Try)):
                stack.extend(node.body + node.orelse + getattr(node, "finalbody", [])
                             + [n for h in getattr(node, "handlers", []) for n in h.body])
    else:
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found.update(t for t in targets if t.split(".")[0] in PACKAGES)
    return found


def graph(top_level_only: bool = True) -> dict[str, set[str]]:
    modules = {module_name(p): p for pkg in PACKAGES for p in (PROJECT / pkg).rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = {t for t in imports(path, top_level_only) if t in modules and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_module_imports_itself_through_others():
    # A package importing its own submodules is not a cycle of the code's parts: leave __init__ out.
    edges = graph()
    packages = {name for name in edges if (PROJECT / name.replace(".", "/") / "__init__.py").exists()}
    inner = {name: {t for t in targets if t not in packages} for name, targets in edges.items()}
    assert cycles(inner) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_engine_never_imports_the_server_the_wire_or_the_store():
    for name, targets in graph(top_level_only=False).items():
        if name.split(".")[0] == "session":
            assert not {t for t in targets if t.split(".")[0] == "liaison"}, f"{name} imports liaison"


def test_test_files_have_unique_names():
    """Without __init__.py files pytest imports test modules by file name: two of one name break a whole run."""
    names = [p.name for p in (PROJECT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def undocumented(path: Path) -> list[str]:
    """Public classes and functions in ``path`` (methods of public classes too) that have no docstring."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and not child.name.startswith("_"):
                if not ast.get_docstring(child):
                    found.append(f"{path.name}:{child.lineno} {prefix}{child.name}")
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return found


def test_every_public_class_and_function_states_its_contract():
    missing = [f"{path.parent.relative_to(PROJECT)}/{item}" for package in PACKAGES
               for path in sorted((PROJECT / package).rglob("*.py")) for item in undocumented(path)]
    assert missing == [], f"{len(missing)} public names have no docstring:\n" + "\n".join(missing)


def test_the_docstring_check_finds_what_is_missing(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('def documented():\n    """Yes."""\n\n\nclass Bare:\n    def method(self):\n        pass\n\n'
                     '    def _private(self):\n        pass\n')
    assert undocumented(probe) == ["probe.py:5 Bare", "probe.py:6 Bare.method"]
