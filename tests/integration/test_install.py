"""What a fresh install needs: every module imports, the entry point runs, and every third-party
package the code imports is one that pyproject.toml declares (CI's fresh environment has nothing else)."""

import ast
import importlib
import importlib.metadata
import pkgutil
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

import metasparse

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "metasparse"


def normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {normalized(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in requirements}


def imported_top_level_names(path: Path) -> set[str]:
    """Absolute imports anywhere in the file, function bodies included (most imports here are lazy)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def all_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(metasparse.__path__, "metasparse."))


def test_the_package_has_its_modules():
    assert {"metasparse.cli", "metasparse.cli.codec", "metasparse.cli.experiment"} <= set(all_modules())


@pytest.mark.parametrize("module", all_modules())
def test_every_module_imports(module):
    importlib.import_module(module)


def test_every_imported_third_party_package_is_declared():
    declared = declared_distributions()
    distributions_of = importlib.metadata.packages_distributions()
    undeclared = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for name in imported_top_level_names(path):
            if name in sys.stdlib_module_names or name in ("__future__", "metasparse"):
                continue
            # An optional package that is not installed here is known by its import name only.
            candidates = {normalized(d) for d in distributions_of.get(name, [name])}
            if not candidates & declared:
                undeclared.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_declared_check_sees_an_undeclared_import(tmp_path):
    """The check above maps import names to distributions; a package only pulled in by another
    (click by old typer, scipy by scikit-image) must count as undeclared."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import click\n    from scipy.spatial import cKDTree\n"
                      "    from . import sibling\n")
    assert imported_top_level_names(module) == {"click", "scipy"}
    assert "click" not in declared_distributions()


def entry_point() -> str:
    """The ``metasparse`` script of the environment running the tests (the one pip installed)."""
    beside = Path(sys.executable).with_name("metasparse")
    found = str(beside) if beside.exists() else shutil.which("metasparse")
    assert found, "the metasparse console script is not installed (pip install -e .)"
    return found


@pytest.mark.parametrize("how", ["console-script", "python-m"])
def test_help_runs_as_a_subprocess(how):
    command = [entry_point()] if how == "console-script" else [sys.executable, "-m", "metasparse.cli"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    for verb in ("compress", "decompress", "train", "evaluate", "experiment"):
        assert verb in result.stdout
    assert "Traceback" not in result.stderr


def test_the_cli_runs_without_click():
    """typer >= 0.29 vendors click and no longer installs it: nothing here may import it."""
    program = ("import sys; sys.modules['click'] = None\n"
               "from metasparse.cli import main\n"
               "main(['compress', 'x.png', '-q', 'abc'])\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 2, result.stderr
    assert "Usage:" in result.stderr and "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


def test_ci_builds_its_own_environment_and_runs_the_readme_command():
    readme = (ROOT / "README.md").read_text()
    test_command = re.search(r"^pip install .*\[test\].*pytest.*$", readme, re.MULTILINE).group()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
    assert "-m venv" in ci and ".venv-ci" in ci
    assert ci.index("-m venv") < ci.index(test_command)


def test_pytest_q_prints_its_summary_line(tmp_path):
    """``addopts = "-q"`` plus the README's ``-q`` made ``-qq``, which hides the "N passed" line."""
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^1 passed", result.stdout, re.MULTILINE), result.stdout


def in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True,
                            check=False)
    return inside.returncode == 0


@pytest.mark.skipif(not in_git_checkout(), reason="not a git checkout")
@pytest.mark.parametrize("folder", ["compressed/", "decoded/", "runs/", ".venv/", ".venv-ci/"])
def test_outputs_of_the_main_job_are_ignored_by_git(folder):
    assert subprocess.run(["git", "check-ignore", "-q", folder + "x"], cwd=ROOT, check=False).returncode == 0


def modules_loaded_by(statement: str) -> set[str]:
    """The modules of interest that ``statement`` imports in a fresh interpreter."""
    program = (f"import sys\n{statement}\n"
               "print(' '.join(m for m in ('torch', 'numpy', 'metasparse.codec') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            check=True)
    return set(result.stdout.split())


def test_the_cli_and_the_package_import_without_torch():
    """``metasparse --help`` lists every verb without paying for torch (about a second), numpy or the codec."""
    assert modules_loaded_by("import metasparse.cli") == set()
    assert modules_loaded_by("import metasparse") == set()


def test_help_starts_in_under_a_second():
    seconds = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "metasparse.cli", "--help"], capture_output=True, timeout=120,
                       check=True)
        seconds.append(time.perf_counter() - t0)
    assert statistics.median(seconds) < 1.0, seconds


def test_the_facade_names_every_public_entry_point():
    for name in metasparse.__all__:
        assert getattr(metasparse, name) is not None, name
    assert metasparse.load_model.__name__ == "load_model"
    with pytest.raises(AttributeError):
        metasparse.no_such_name  # noqa: B018


def readme_python_example() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(r"^```python\n(.*?)^```", readme, re.MULTILINE | re.DOTALL).group(1)


def test_the_readme_python_example_imports_only_the_facade():
    imported = [node for node in ast.walk(ast.parse(readme_python_example()))
                if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [ast.unparse(node) for node in imported] == ["import metasparse as ms"]


def test_the_readme_codec_example_runs(tmp_path):
    """The codec part of the example (from ``load_codec`` on), on a tiny photo in place of photo.png."""
    example = readme_python_example()
    codec_part = example[example.index('codec = ms.load_codec("default")'):]
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 28, 3), dtype=np.uint8)).save(photo)
    namespace = {"ms": metasparse}
    exec(compile(codec_part.replace('"photo.png"', repr(str(photo))), "README.md", "exec"), namespace)  # noqa: S102 - runs the README's own example
    assert namespace["image"].shape == (20, 28, 3) and namespace["image"].dtype == np.uint8
    assert namespace["result"].data[:4] == b"MSPZ"
