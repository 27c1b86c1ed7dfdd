"""The package's layout, as README.md's table states it: who may import whom, no cycles, small files.

Every module of derive/ is read with ``ast`` (never imported), imports inside functions included and
relative imports resolved; each import must be one the table allows for the module's row.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "derive"
MAX_LINES = 600


def layout_table() -> list[tuple[list[str], set[str]]]:
    """README's layout rows: (the paths a row covers, what they may import)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`derive/"):
            continue
        paths = re.findall(r"`(derive/[^`]*)`", cells[0])
        allowed = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", cells[2].split(";")[0]))
        rows.append((paths, allowed))
    return rows


ROWS = layout_table()


def row_of(relative: str) -> int:
    """The row whose path covers ``relative`` (derive/core/rules.py is in derive/core/)."""
    matches = [(len(path), k) for k, (paths, _) in enumerate(ROWS) for path in paths
               if relative == path or (path.endswith("/") and relative.startswith(path))]
    if not matches:
        raise AssertionError(f"{relative} is in no row of README.md's layout table")
    return max(matches)[1]


def row_name(k: int) -> set[str]:
    """The words by which other rows name row ``k`` (``core`` for derive/core/)."""
    return {Path(path.rstrip("/")).stem for path in ROWS[k][0]}


MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(path): path for path in MODULES}


def imports(path: Path):
    """(line, the imported module, the top-level package) of every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if full in NAMES else base


def derive_target(name: str) -> str | None:
    """The derive module an import reaches (the longest module of derive that ``name`` starts with)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in NAMES:
            return candidate
        parts.pop()
    return None


def relative(module: str) -> str:
    return str(NAMES[module].relative_to(ROOT))


def test_the_table_covers_every_module():
    for path in MODULES:
        row_of(str(path.relative_to(ROOT)))


def test_every_import_is_one_the_table_allows():
    problems = []
    everything = {"everything"}
    for path in MODULES:
        source = str(path.relative_to(ROOT))
        mine = row_of(source)
        allowed = ROWS[mine][1]
        for line, name in imports(path):
            target = derive_target(name)
            if target is None:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "__future__" or allowed & everything:
                    continue
                if top not in allowed:
                    problems.append(f"{source}:{line} imports {name}, which its row does not allow")
                continue
            theirs = row_of(relative(target))
            if theirs == mine:
                continue
            if "cli" in row_name(theirs):
                problems.append(f"{source}:{line} imports {name}: nothing imports the command")
            elif not (allowed & everything or row_name(theirs) & allowed):
                problems.append(f"{source}:{line} imports {name} ({relative(target)}), which its row does not allow")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_derives_modules():
    edges: dict[str, list[tuple[str, int]]] = {m: [] for m in NAMES}
    for module, path in NAMES.items():
        for line, name in imports(path):
            target = derive_target(name)
            if target is not None and target != module and not module.startswith(target + "."):
                edges[module].append((target, line))   # a package's own __init__ is not a dependency
    state: dict[str, int] = {}
    stack: list[tuple[str, int]] = []

    def visit(module: str):
        state[module] = 1
        for target, line in edges[module]:
            stack.append((module, line))
            if state.get(target) == 1:
                start = next(k for k, (m, _) in enumerate(stack) if m == target)
                cycle = " -> ".join(f"{relative(m)}:{n}" for m, n in stack[start:])
                pytest.fail(f"import cycle: {cycle} -> {relative(target)}")
            if target not in state:
                visit(target)
            stack.pop()
        state[module] = 2

    for module in sorted(NAMES):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_every_module_is_short_and_says_what_it_is_for(path):
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"
    assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)} has no module docstring"


def test_the_graph_knows_no_operation():
    """The sweep applies whatever rule the table holds: graph.py names no class that has a rule."""
    from derive.core.rules import REFUSED, RULES

    operations = {cls.__name__ for cls in [*RULES, *REFUSED]}
    tree = ast.parse((PACKAGE / "core" / "graph.py").read_text(encoding="utf-8"))
    named = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for alias in node.names} | {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not named & operations, f"graph.py names operations: {sorted(named & operations)}"
