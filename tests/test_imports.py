"""The architecture rules a reviewer checks by hand, as tests:
- fer_core never imports ray; jobs, serve and analysis never import each other (the CLI module alone
  dispatches to them lazily);
- fer_core has no import cycle (lazy imports inside functions count too);
- no module of the four packages is over 400 lines;
- no run-file name ("eval.json", "metrics.csv", ...) is spelled outside fer_core/runs.py.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

from conftest import REPO

PACKAGES = ("fer_core", "jobs", "serve", "analysis")
MAX_LINES = 400


def _modules(root: Path, package: str):
    for path in sorted((root / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def imported_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:  # `from fer_core import runs` imports the module fer_core.runs
                yield f"{node.module}.{alias.name}", node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                yield node.args[0].value, node.lineno


def violations(root: Path = REPO) -> list[str]:
    found = []
    for package in PACKAGES:
        for path, tree in _modules(root, package):
            rel = path.relative_to(root).as_posix()
            for module, line in imported_modules(tree):
                top = module.split(".")[0]
                if package == "fer_core" and top in ("ray", "jobs", "serve", "analysis"):
                    found.append(f"{rel}:{line} imports {module}")
                elif package != "fer_core" and top in PACKAGES and top not in (package, "fer_core"):
                    if rel != "jobs/cli.py":
                        found.append(f"{rel}:{line} imports {module}")
    return sorted(set(found))


def test_import_rule_holds():
    assert violations() == []


def test_checker_catches_a_wrong_import(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "serve" / "probe.py").write_text("from jobs.cli import main\n")
    (tmp_path / "fer_core" / "probe.py").write_text("def f():\n    import ray\n")
    assert violations(tmp_path) == ["fer_core/probe.py:2 imports ray", "serve/probe.py:1 imports jobs.cli",
                                    "serve/probe.py:1 imports jobs.cli.main"]


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """fer_core module -> the fer_core modules it imports, at the top or inside functions."""
    names = {}
    for path, _ in _modules(root, "fer_core"):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from fer_core import runs` imports the module fer_core.runs, not what fer_core/__init__ defines
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(names)
                deps |= subs if len(subs) == len(node.names) else subs | {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {m for m in deps if m in names and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_fer_core_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_over_400_lines():
    long = [f"{p.relative_to(REPO)}: {n}" for package in PACKAGES for p, _ in _modules(REPO, package)
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert long == []


def run_file_literals(root: Path = REPO) -> list[str]:
    """String constants (docstrings aside) that spell a run-file name, outside fer_core/runs.py."""
    import importlib

    import re

    runs = importlib.import_module("fer_core.runs")
    names = {v for k, v in vars(runs).items() if k.isupper() and isinstance(v, str) and "." in v}
    # the name as a whole path component: "weights/best.pt" and "(eval.json)" count, "_timeline.png" does not
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, sorted(names))) + r")(?!\w)")
    found = []
    for package in PACKAGES:
        for path, tree in _modules(root, package):
            rel = path.relative_to(root).as_posix()
            if rel == "fer_core/runs.py":
                continue
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                          and node.body and isinstance(node.body[0], ast.Expr)
                          and isinstance(node.body[0].value, ast.Constant)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                    hits = sorted(set(pattern.findall(node.value)))
                    if hits:
                        found.append(f"{rel}:{node.lineno} {hits}")
    return found


def test_run_file_names_are_spelled_only_in_runs_py():
    assert run_file_literals() == []


def test_cli_imports_no_heavy_package_at_start():
    import subprocess
    import sys

    # building the parser too: `fertune serve`'s flags come from serve.settings, which must stay light
    code = ("import sys, jobs.cli; jobs.cli.build_parser(); "
            "print(sorted(m for m in ('ray', 'matplotlib', 'serve.app', 'torch', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def layers_from_docs() -> dict[str, int]:
    """fer_core module -> its layer's row in the table of fer_core/__init__.py's docstring."""
    import re

    import fer_core

    rank = {}
    rows = [line for line in fer_core.__doc__.splitlines() if line.startswith("| ") and "`" in line]
    for i, row in enumerate(rows):
        for name in re.findall(r"`([\w/]+)`", row.split("|")[2]):
            rank["fer_core." + name.strip("/").replace("/", ".")] = i
    return rank


def test_fer_core_layers_import_only_upward():
    rank = layers_from_docs()
    graph = import_graph()
    layer_of = {m: rank.get(m, rank.get(m.rsplit(".", 1)[0])) for m in graph if m != "fer_core"}
    assert [m for m, r in layer_of.items() if r is None] == [], "place every module in fer_core/__init__.py's table"
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
              if d != "fer_core" and m != "fer_core" and layer_of[d] > layer_of[m]]
    assert upward == []
