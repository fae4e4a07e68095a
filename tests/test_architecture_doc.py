"""docs/architecture.md, the module map, names every module of the package; the top level stays small."""

from __future__ import annotations

import re

from helpers.workspace import REPO

DOC = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "src" / "imgclf"


def test_the_module_map_names_every_module():
    words = set(re.findall(r"[a-z0-9_]+", DOC.read_text(encoding="utf-8")))
    modules = {path.stem for path in PACKAGE.rglob("*.py") if path.stem not in ("__init__", "__main__")}
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    assert not (modules | folders) - words, f"not in {DOC.name}: {sorted((modules | folders) - words)}"


def test_the_top_level_keeps_few_modules():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
