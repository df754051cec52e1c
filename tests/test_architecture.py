"""Architecture rules that ``lint-imports`` does not check: no module-level import cycles
anywhere in mfclip, and no module longer than 450 lines without a stated reason.

Imports made inside functions count: a lazy import still ties the two modules together, and a
cycle of them is one refactoring away from an ImportError at start-up.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

import mfclip

PACKAGE_DIR = Path(mfclip.__file__).parent
MAX_LINES = 450
REASON = re.compile(r"(?:^|[.!?:]\s+)Longer than 450 lines because\b")


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); components of one node are dropped."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
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
                        cycles.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(cycles)


def test_strongly_connected_finds_each_cycle_once() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": ["e"], "e": ["d"], "f": ["a"]}
    assert strongly_connected(edges) == [["a", "b", "c"], ["d", "e"]]
    assert strongly_connected({"a": ["b"], "b": []}) == []


def test_no_import_cycles_between_modules() -> None:
    graph = grimp.build_graph("mfclip", cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = strongly_connected(edges)
    report = []
    for cycle in cycles:
        report.append(" <-> ".join(cycle))
        for a in cycle:
            for b in sorted(edges[a] & set(cycle)):
                lines = [d["line_number"] for d in graph.get_import_details(importer=a, imported=b)]
                report.append(f"    {a} -> {b} (line {', '.join(map(str, lines))})")
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(report)


def _too_long(path: Path) -> int | None:
    """The line count of ``path`` if it is over the limit without a stated reason."""
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    if lines <= MAX_LINES:
        return None
    docstring = ast.get_docstring(ast.parse(text)) or ""
    return None if REASON.search(" ".join(docstring.split())) else lines


def test_modules_are_at_most_450_lines_or_say_why() -> None:
    long = {
        str(path.relative_to(PACKAGE_DIR.parent)): lines
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if (lines := _too_long(path)) is not None
    }
    assert not long, (
        f"over {MAX_LINES} lines, with no 'Longer than 450 lines because ...' sentence in the "
        "module docstring: " + ", ".join(f"{name} ({n})" for name, n in long.items())
    )
