"""The arrows of ARCHITECTURE.md hold: import-linter's contracts in pyproject.toml, and no hidden imports."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "hub"
# create_app imports the faces only when called, so that `import hub` stays light for agency tools.
ALLOWED_LATE_IMPORTS = {("hub/__init__.py", "hub.wiring")}


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _late_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.split(".")[0] == "hub":
                    yield inner.module, inner.lineno
                elif isinstance(inner, ast.Import):
                    for alias in inner.names:
                        if alias.name.split(".")[0] == "hub":
                            yield alias.name, inner.lineno


def test_no_hub_import_hides_inside_a_function():
    found = []
    for path in sorted(HUB.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for module, line in _late_imports(path):
            if (rel, module) not in ALLOWED_LATE_IMPORTS:
                found.append(f"{rel}:{line} imports {module}")
    assert found == [], "imports inside functions hide cycles; import at the top or take a callback:\n" + \
        "\n".join(found)
