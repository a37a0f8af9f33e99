"""The shape the architecture keeps: PE kinds spelled in one place, modules small enough to read in one sitting."""

import ast
from pathlib import Path

from hw.kinds import PE_KINDS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("golden", "hw", "sim", "reports")
MAX_MODULE_LINES = 600
#: hw.kinds declares the kinds; golden.spec and golden.layers name the schemes that share some of the names
MAX_FILES_NAMING_KINDS = 5


def package_modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def kind_literals(path: Path) -> list[int]:
    """Lines of ``path`` holding a string constant equal to a PE-kind name (docstrings are not equal to one)."""
    tree = ast.parse(path.read_text(), str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in PE_KINDS]


def test_pe_kind_names_are_spelled_in_few_files():
    naming = {path.relative_to(ROOT).as_posix(): lines for path in package_modules() if (lines := kind_literals(path))}
    assert "hw/kinds.py" in naming  # the registry itself; the scanner finds literals
    assert len(naming) <= MAX_FILES_NAMING_KINDS, f"PE-kind names as string literals in {len(naming)} files: {naming}"


def test_no_module_is_longer_than_a_sitting():
    long = {path.relative_to(ROOT).as_posix(): n for path in package_modules()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
