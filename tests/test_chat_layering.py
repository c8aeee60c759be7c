"""Packages depend only downward: agent <- review <- synthesis / train / eval (the Chat tab reaches the store
only through the hooks app.py passes in)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BELOW = {"agent": {"review", "synthesis", "train", "eval"}, "review": {"synthesis", "train", "eval"}}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_package_imports_one_above_it():
    wrong = [f"{path.relative_to(ROOT)} imports {sorted(_imported_packages(path) & forbidden)}"
             for package, forbidden in BELOW.items() for path in sorted((ROOT / package).rglob("*.py"))
             if _imported_packages(path) & forbidden]
    assert wrong == []


def test_the_chat_tab_and_the_agent_cli_load_without_review():
    code = ("import sys, agent.ui, agent.cli, agent.settings_ui, agent.session\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('review', 'synthesis', 'train', 'eval')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
