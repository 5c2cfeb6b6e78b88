"""The import structure of the code, read from its own source (docs/architecture.md, "Floors").

Every ``import`` counts, at module level, inside functions and under
``TYPE_CHECKING`` alike (a type-level cycle is still a cycle). Run it to see
the figures that docs/architecture.md quotes::

    .venv/bin/python -m tests.import_layers            # this checkout
    .venv/bin/python -m tests.import_layers --root DIR  # another one (an old commit's tree)

tests/unit/test_layers.py holds the rules against it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AREAS",
    "MAX_LINES",
    "Graph",
    "cycles",
    "not_allowed",
    "oversized",
    "read_graph",
]

#: The packages measured, lowest floor first (docs/architecture.md, "Floors").
AREAS = ("hilgw", "drivers", "gateway", "sim_devices")
#: What each area may import besides itself. The emulators sit beside the
#: gateway on the shared floor: they may use its transports (the same I/O on
#: both ends of a link) and read a gateway config file, nothing else of it.
ALLOWED: dict[str, tuple[str, ...]] = {
    "hilgw": (),
    "drivers": ("hilgw",),
    "gateway": ("hilgw", "drivers"),
    "sim_devices": (
        "hilgw",
        "drivers",
        "gateway.transports",
        "gateway.sections.transports",
        "gateway.config",
    ),
}
#: The protocol packages of drivers/ (each one codec; shared pieces live beside
#: them in drivers/*.py or on the shared floor, hilgw/).
PROTOCOL_PACKAGES = ("asterix", "can_radar", "described", "dis", "launcher", "nmea", "serial_radar")
#: Generated code (proto/ -> hilgw/v1) is no part of the structure.
GENERATED = ("hilgw.v1",)
#: The house rule for a module's length (STYLE.md, "Modules stay small").
MAX_LINES = 600


@dataclass(frozen=True, slots=True)
class Graph:
    """Modules (dotted name -> path and line count) and import edges between them."""

    modules: dict[str, tuple[Path, int]]
    edges: frozenset[tuple[str, str]]


def _generated(name: str) -> bool:
    return any(name == g or name.startswith(g + ".") for g in GENERATED)


def _module_names(root: Path) -> dict[str, tuple[Path, int]]:
    out: dict[str, tuple[Path, int]] = {}
    for area in AREAS:
        for path in sorted((root / area).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            if not _generated(name):
                out[name] = (path, len(path.read_text(encoding="utf-8").splitlines()))
    return out


def _targets(node: ast.AST, here: str, is_pkg: bool, modules: dict[str, tuple[Path, int]]) -> Iterator[str]:
    """Our modules that one import statement names (the longest known prefix of each)."""

    def known(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    if isinstance(node, ast.Import):
        for alias in node.names:
            if (t := known(alias.name)) is not None:
                yield t
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            pkg = here if is_pkg else here.rpartition(".")[0]
            for _ in range(node.level - 1):
                pkg = pkg.rpartition(".")[0]
            base = f"{pkg}.{base}" if base else pkg
        for alias in node.names:
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
            sub, pkg_ = known(f"{base}.{alias.name}"), known(base)
            t = sub if sub is not None and sub != pkg_ else pkg_
            if t is not None:
                yield t


def read_graph(root: Path) -> Graph:
    """Parse every module of :data:`AREAS` under ``root``."""
    modules = _module_names(root)
    edges: set[tuple[str, str]] = set()
    for name, (path, _) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            for target in _targets(node, name, is_pkg, modules):
                if target != name and not _generated(target):
                    edges.add((name, target))
    return Graph(modules, frozenset(edges))


def _area(name: str) -> str:
    return name.partition(".")[0]


def _protocol(name: str) -> str | None:
    """The protocol package of a drivers module (``drivers.can_radar.codec`` -> ``can_radar``)."""
    parts = name.split(".")
    is_package_module = len(parts) >= 3 or (len(parts) == 2 and parts[1] in PROTOCOL_PACKAGES)
    return parts[1] if parts[0] == "drivers" and is_package_module else None


def not_allowed(graph: Graph) -> list[tuple[str, str, str]]:
    """Imports against the floors, each with why: an arrow back up, or sideways between rooms
    that must not know each other (one protocol package and another, a transport and a codec)."""
    bad = []
    for src, dst in sorted(graph.edges):
        a, b = _area(src), _area(dst)
        if a != b and not any(dst == ok or dst.startswith(ok + ".") for ok in ALLOWED[a]):
            bad.append((src, dst, f"{a} may not import {dst}"))
        elif (p := _protocol(src)) and (q := _protocol(dst)) and p != q:
            bad.append((src, dst, f"protocol package {p} imports protocol package {q}"))
        elif (src == "gateway.transports" or src.startswith("gateway.transports.")) and b == "drivers":
            bad.append((src, dst, "a transport imports a codec"))
    return bad


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected sets of two or more modules (Tarjan), each sorted, sorted by size."""
    succ: dict[str, list[str]] = {m: [] for m in graph.modules}
    for src, dst in graph.edges:
        succ[src].append(dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(succ):
        if start in index:
            continue
        # Iterative Tarjan: the import graph is deep enough to make recursion fragile.
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(succ[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(succ[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    scc.append(m)
                    if m == node:
                        break
                if len(scc) > 1:
                    found.append(sorted(scc))
    return sorted(found, key=lambda c: (-len(c), c))


def oversized(graph: Graph, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """Modules longer than ``limit`` lines, longest first."""
    rows = [(str(p.as_posix()), n) for p, n in graph.modules.values() if n > limit]
    return sorted(rows, key=lambda r: -r[1])


def _table(rows: Iterable[tuple[str, object]]) -> str:
    return "\n".join(f"{k:<44} {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.import_layers", description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ns = ap.parse_args(argv)
    root: Path = ns.root.resolve()
    graph = read_graph(root)
    bad = not_allowed(graph)
    circles = cycles(graph)
    big = [(str(Path(p).relative_to(root)), n) for p, n in oversized(graph)]
    cross = sorted({(_area(s), _area(d)) for s, d in graph.edges if _area(s) != _area(d)})
    print(
        _table(
            [
                ("modules", len(graph.modules)),
                ("imports between them", len(graph.edges)),
                ("area -> area", ", ".join(f"{a}->{b}" for a, b in cross)),
                ("imports against the floors", len(bad)),
                ("import cycles (files in them)", f"{len(circles)} ({sum(map(len, circles))})"),
                (f"modules over {MAX_LINES} lines", len(big)),
            ]
        )
    )
    for src, dst, why in bad:
        print(f"  not allowed: {src} -> {dst} ({why})")
    for c in circles:
        print(f"  cycle: {', '.join(c)}")
    for path, n in big:
        print(f"  {n} lines: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
