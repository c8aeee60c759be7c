"""Packages depend only downward (core <- agent <- review <- synthesis / train / eval), only core touches the
database connection, and no package writes to another package's tables."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "agent", "review", "synthesis", "train", "eval")
ABOVE = {
    "core": {"agent", "review", "synthesis", "train", "eval"},
    "agent": {"review", "synthesis", "train", "eval"},
    "review": {"synthesis", "train", "eval"},
    "synthesis": {"train", "eval"},
    "train": {"synthesis", "eval"},
    "eval": {"synthesis", "train"},
}
WRITE = re.compile(r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO\s+(\w+)|UPDATE\s+(\w+)\s+SET|DELETE\s+FROM\s+(\w+))",
                   re.IGNORECASE)
CREATE = re.compile(r"CREATE\s+(?:VIRTUAL\s+)?TABLE\s+(\w+)", re.IGNORECASE)


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported_packages(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _strings(tree: ast.Module) -> list[str]:
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_no_package_imports_one_above_or_beside_it():
    wrong = [f"{path.relative_to(ROOT)} imports {sorted(_imported_packages(_tree(path)) & forbidden)}"
             for package, forbidden in ABOVE.items() for path in _modules(package)
             if _imported_packages(_tree(path)) & forbidden]
    assert wrong == []


def test_only_core_holds_a_database_connection():
    """Every read and write goes through core.db: its pooled reads and its transactions."""
    wrong = []
    for package in PACKAGES[1:]:
        for path in _modules(package):
            tree = _tree(path)
            if "sqlite3" in _imported_packages(tree):
                wrong.append(f"{path.relative_to(ROOT)} imports sqlite3")
            wrong += [f"{path.relative_to(ROOT)}:{node.lineno} uses .{node.attr}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr in ("conn", "_conn", "connection")]
    assert wrong == []


def test_no_package_writes_to_another_packages_tables():
    """Migrations (schema.py) are the exception: they once moved a package's own old rows into `runs`."""
    owned = {package: {name.lower() for path in _modules(package) for text in _strings(_tree(path))
                       for name in CREATE.findall(text)} for package in PACKAGES}
    assert {"runs", "jobs"} <= owned["core"] and "trajectories" in owned["review"]
    written = [(package, path, "".join(names)) for package in PACKAGES for path in _modules(package)
               if path.name != "schema.py" for text in _strings(_tree(path)) for names in WRITE.findall(text)]
    assert any(table == "trajectories" for _, _, table in written)
    wrong = [f"{path.relative_to(ROOT)} writes {table}" for package, path, table in written
             if table.lower() not in owned[package] and table.lower() != "schema_version"]
    assert wrong == []


def test_the_chat_tab_and_the_agent_cli_load_without_review():
    code = ("import sys, agent.ui, agent.cli, agent.settings_ui, agent.session\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('review', 'synthesis', 'train', 'eval')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_core_loads_without_gradio_torch_or_the_other_packages():
    code = ("import sys, core.db, core.jobs, core.runs, core.ui, core.cli, core.defaults, core.clock\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'gradio', 'torch', 'transformers', 'agent',"
            " 'review', 'synthesis', 'train', 'eval'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_trajectories_as_data_load_no_tool():
    """The store and the viewer count tool calls from names alone; loading every tool is for running them."""
    code = ("import sys, agent.steps, review.store, review.viewer\n"
            "print(sorted(m for m in sys.modules if m.startswith('agent.tools')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
