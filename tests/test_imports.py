"""SPEC.md's import rule: fer_core never imports ray; jobs, serve and analysis never import each other
(the CLI module alone dispatches to them lazily)."""
from __future__ import annotations

import ast

import pytest

from conftest import REPO

PACKAGES = ("fer_core", "jobs", "serve", "analysis")


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                yield node.args[0].value, node.lineno


def violations():
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for module, line in imported_modules(path):
                top = module.split(".")[0]
                if package == "fer_core" and top in ("ray", "jobs", "serve", "analysis"):
                    found.append(f"{rel}:{line} imports {module}")
                elif package != "fer_core" and top in PACKAGES and top not in (package, "fer_core"):
                    if rel != "jobs/cli.py":
                        found.append(f"{rel}:{line} imports {module}")
    return found


def test_import_rule_holds():
    assert violations() == []


def test_checker_catches_a_wrong_import(tmp_path, monkeypatch):
    bad = REPO / "serve" / "_import_rule_probe.py"
    bad.write_text("from jobs.cli import main\n")
    try:
        assert any("serve/_import_rule_probe.py" in v for v in violations())
    finally:
        bad.unlink()


def test_cli_imports_no_heavy_package_at_start():
    import subprocess
    import sys

    code = "import sys, jobs.cli; print(sorted(m for m in ('ray', 'matplotlib', 'serve.app') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
