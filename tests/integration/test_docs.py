"""The documentation's links resolve, and the names the equation map gives are defined where it says."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[([^\]]+)\]\(([^)#\s]+)(?:#[^)]*)?\)")


def defined_names(path: Path) -> set[str]:
    """Top-level functions and classes, and Class.method for their methods."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{item.name}" for item in node.body if isinstance(item, ast.FunctionDef))
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    for _, target in LINK.findall(doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"


def test_the_equation_map_names_functions_that_exist():
    doc = ROOT / "docs" / "equations.md"
    links = LINK.findall(doc.read_text())
    code_links = [(label, target) for label, target in links if target.endswith(".py")]
    assert len(code_links) >= 20, "the equation map should point at the code of every equation"
    for label, target in code_links:
        path = doc.parent / target
        available = defined_names(path)
        for name in re.findall(r"`([A-Za-z_][\w.]*)", label):
            assert name in available, f"docs/equations.md: {name} is not defined in {target}"
