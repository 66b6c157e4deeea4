"""The layered architecture, checked: import-linter's contracts, no registration by string, a light CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "metasparse"


def test_import_contracts_hold():
    lint = shutil.which("lint-imports")
    assert lint is not None, "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("path", sorted(SOURCE.rglob("*.py")), ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_module_is_imported_by_name_string(path):
    # import-linter cannot see importlib.import_module("..."): a layer breach hidden that way would pass it.
    text = path.read_text()
    assert not re.search(r"\bimport_module\(|\bfind_spec\(", text), f"{path.name} imports a module by string"


@pytest.mark.parametrize("module", ["metasparse", "metasparse.cli", "metasparse.errors", "metasparse.utils.registry"])
def test_light_modules_do_not_import_torch(module):
    program = f"import sys, {module}; heavy = [m for m in ('torch', 'numpy') if m in sys.modules]; print(heavy)"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} loads {result.stdout.strip()}"


def test_the_file_format_layer_does_not_import_torch():
    # The container, quantiser and entropy coder are numpy only (import-linter's "format-without-torch"
    # contract checks the imports; this checks what importing them actually loads).
    modules = "metasparse.codec.format.bitstream, metasparse.codec.format.quantize, metasparse.codec.format.entropy"
    program = f"import sys, {modules}; print([m for m in ('torch', 'safetensors') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing the format layer loads {result.stdout.strip()}"
