"""The package's shape: the product's top-level layout, no import cycles, and a command line that starts
without importing torch or streamlit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where each installed package's code lives in the checkout (pyproject.toml's package-dir).
PACKAGES = {"coordscope": ROOT / "coordscope", "coordscope.app": ROOT / "app",
            "coordscope.probes": ROOT / "probes", "coordscope.sample_models": ROOT / "sample_models"}


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, from the checkout's folders."""
    modules: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules.setdefault(".".join(parts), path)
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (function bodies included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_top_level_is_the_products_layout() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    top = {path.split("/")[0] for path in tracked}
    assert {"coordscope", "app", "probes", "sample_models", "tests", "pyproject.toml"} <= top
    assert not {"app", "probes", "sample_models"} & {p.name for p in (ROOT / "coordscope").iterdir()}


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert graph["coordscope.coordcheck"], "the import graph came out empty: the finder is broken"
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["samples"], ["check", "--help"]])
def test_the_command_line_starts_without_torch_or_streamlit(args: list[str]) -> None:
    code = ("import sys\nfrom coordscope.cli import main\nsys.argv = ['coordscope', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
            "heavy = sorted(m for m in ('torch', 'streamlit', 'polars') if m in sys.modules)\n"
            "print('HEAVY', heavy, code, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert last == "HEAVY [] 0", (last, done.stdout[-500:])
    assert done.stdout.strip(), "the command printed nothing"
