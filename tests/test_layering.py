"""The runtime stands apart from the research tools, and the light imports stay light.

Runtime: policy, detect, rewrite, inject, guard, audit, ocr, pipelines (loading, profiles).
Tools: localize, bench, metrics, editing, testbed (its model, data and trainer), cli.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "safetext"
RUNTIME = ["policy", "detect", "rewrite", "inject", "audit", "ocr", "pipelines", "guard.py", "errors.py"]
TOOLS = (
    "safetext.localize", "safetext.bench", "safetext.metrics", "safetext.editing", "safetext.lora", "safetext.testbed", "safetext.cli"
)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Modules imported by ``path``, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("part", RUNTIME)
def test_runtime_imports_no_tool(part: str) -> None:
    files = [PACKAGE / part] if part.endswith(".py") else sorted((PACKAGE / part).rglob("*.py"))
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path in files
        for line, module in _imports(path)
        if module.startswith(TOOLS)
    ]
    assert bad == []


def test_guard_and_policy_load_no_tool_module() -> None:
    code = (
        "import sys, safetext, safetext.policy, safetext.audit; from safetext import Guard; "
        f"print(sorted(m for m in sys.modules if m.startswith({TOOLS!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_policy_import_is_light() -> None:
    # numpy and PIL serve the audit's image code, which a policy names but never runs
    code = (
        "import sys, safetext.policy; "
        "print([m for m in ('torch', 'diffusers', 'transformers', 'spacy', 'numpy', 'PIL') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_audit_package_loads_image_code_on_first_use() -> None:
    code = (
        "import sys, safetext.audit as a; before = 'numpy' in sys.modules; "
        "from safetext.audit import Auditor, blur_text, AuditOutcome, make_record, to_pil_images; "
        "print(before, 'numpy' in sys.modules, sorted(a.__all__) == sorted(n for n in a.__all__ if hasattr(a, n)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]
