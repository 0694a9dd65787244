"""Fail when any module of the project is part of an import cycle (`make lint`).

    python scripts/check_import_cycles.py

import-linter's contracts check layers and forbidden imports, and `acyclic_siblings` checks cycles between the
siblings of one package; none of them says "no cycle anywhere, between any modules of any of our packages". This
does: it builds the import graph of the packages listed as `root_packages` in .importlinter with grimp (every
import counts, function-local and TYPE_CHECKING ones included), finds its strongly connected components, and
prints each one with more than one module: its shortest cycle, then every import between its modules, with lines.
Exit status 1 when there is a cycle, 0 otherwise.
"""

from __future__ import annotations

import argparse
import configparser
import sys
from collections import deque
from pathlib import Path

import grimp

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def root_packages(config_path: Path) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config_path)
    return parser["importlinter"]["root_packages"].split()


def strongly_connected_components(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the import graph can be deeper than the recursion limit)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = lowlink[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = lowlink[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    lowlink[module] = min(lowlink[module], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[module])
                if lowlink[module] == index[module]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == module:
                            break
                    components.append(component)
    return components


def shortest_cycle(graph: grimp.ImportGraph, component: set[str]) -> list[str]:
    """The shortest cycle inside one component, as [a, b, ..., a] (BFS from each member)."""
    best: list[str] | None = None
    for start in sorted(component):
        previous: dict[str, str] = {}
        queue = deque([start])
        found = None
        while queue and found is None:
            module = queue.popleft()
            for child in sorted(graph.find_modules_directly_imported_by(module) & component):
                if child == start:
                    found = module
                    break
                if child not in previous:
                    previous[child] = module
                    queue.append(child)
        if found is None:
            continue
        path = [found]
        while path[-1] != start:
            path.append(previous[path[-1]])
        path.reverse()
        path.append(start)
        if best is None or len(path) < len(best):
            best = path
    return best or []


def describe_import(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    lines = ", ".join(f"l.{d['line_number']}" for d in details)
    first = details[0]["line_contents"].strip() if details else ""
    return f"{importer} -> {imported} ({lines}): {first}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / ".importlinter")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(PROJECT_ROOT))
    packages = root_packages(args.config)
    graph = grimp.build_graph(*packages, cache_dir=None)
    cycles = sorted((c for c in strongly_connected_components(graph) if len(c) > 1), key=lambda c: (-len(c), sorted(c)))
    if not cycles:
        print(f"No import cycle in {len(graph.modules)} modules of {', '.join(packages)}.")
        return 0

    print(f"{len(cycles)} import cycle(s) in {', '.join(packages)} (groups of modules that import each other):")
    for number, component in enumerate(cycles, start=1):
        print(f"\n{number}. {len(component)} modules: {', '.join(sorted(component))}")
        print("   shortest cycle:")
        path = shortest_cycle(graph, component)
        for importer, imported in zip(path, path[1:], strict=False):
            print(f"     {describe_import(graph, importer, imported)}")
        print("   every import inside the group:")
        for importer in sorted(component):
            for imported in sorted(graph.find_modules_directly_imported_by(importer) & component):
                print(f"     {describe_import(graph, importer, imported)}")
    print("\nBreak each cycle by moving the code both sides need into a lower module (see README, Architecture).")
    return 1


if __name__ == "__main__":
    sys.exit(main())
