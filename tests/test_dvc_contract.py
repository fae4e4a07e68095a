"""dvc.yaml is complete and minimal: stage name = module name, and code deps are exactly the imports.

For each stage, run as `python -m stages.<name>`, a fresh interpreter imports the module the way
Python runs it and collects the project modules it loaded (imgclf.pipeline.deps, the same code as
`python -m imgclf deps`). Those files must be exactly the stage's .py deps: a missing one would
leave a stale result after a code change, an extra one re-runs a stage for nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from imgclf.pipeline import deps

from conftest import REPO


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def entry_names(entries: list) -> list[str]:
    """Paths (or params keys) of a dvc.yaml list whose items are strings or one-key mappings."""
    return [item if isinstance(item, str) else next(iter(item)) for item in entries or []]


@pytest.fixture(scope="module")
def imports() -> dict[str, list[str]]:
    return deps.imports(REPO, sorted(dvc_stages()))


def test_every_stage_has_a_module_of_its_name_and_nothing_else_is_there():
    modules = {path.stem for path in (REPO / "stages").glob("*.py") if path.stem != "__init__"}
    assert modules == set(dvc_stages())
    for name, stage in dvc_stages().items():
        assert stage["cmd"] == deps.stage_command(name), name


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_code_deps_are_exactly_the_imports(name, imports):
    deps = entry_names(dvc_stages()[name].get("deps"))
    code_deps = {dep for dep in deps if dep.endswith(".py")}
    expected = set(imports[name])
    assert not code_deps - expected, f"{name}: deps not imported: {sorted(code_deps - expected)} (python -m imgclf deps --write)"
    assert not expected - code_deps, f"{name}: imports missing from deps: {sorted(expected - code_deps)} (python -m imgclf deps --write)"
    folders = [dep for dep in deps if dep.startswith(("src", "stages")) and not dep.endswith(".py")]
    assert not folders, f"{name}: code folders as deps re-run the stage for any change: {folders}"


def test_rewrite_restores_drifted_deps_and_keeps_everything_else(imports):
    text = (REPO / "dvc.yaml").read_text()
    drifted = text.replace("      - src/imgclf/training/fit.py\n", "", 1).replace(
        "      - stages/top.py\n", "      - stages/top.py\n      - src/imgclf/cli.py\n", 1)
    assert drifted != text
    rewritten = deps.rewrite(drifted, imports)
    assert yaml.safe_load(rewritten) == yaml.safe_load(text)
    assert deps.rewrite(text, imports) == text


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_params_exist_and_outputs_are_conventional(name):
    stage = dvc_stages()[name]
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for key in entry_names(stage.get("params")):
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{name}: params.yaml has no {key}"
            node = node[part]
    outputs = [*entry_names(stage.get("outs")), *entry_names(stage.get("metrics")),
               *entry_names(stage.get("plots"))]
    assert not [path for path in outputs if path.startswith("logs")], "TensorBoard logs are run-specific"
    for item in stage.get("metrics") or []:
        options = next(iter(item.values())) if isinstance(item, dict) else {}
        assert (options or {}).get("cache") is False, f"{name}: metrics should be cache: false"


def lazy_imgclf_imports(path: Path) -> list[int]:
    """Line numbers of imgclf imports inside functions (invisible to the import probe)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    lines = set()
    for function in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(name == "imgclf" or name.startswith("imgclf.") for name in names):
                lines.add(node.lineno)
    return sorted(lines)


# The command-line dispatcher imports `predict` (and so TensorFlow) only for that command; no
# stage imports it (checked below), so no stage's deps depend on that import.
CLI = REPO / "src" / "imgclf" / "cli.py"


def test_no_stage_imports_the_command_line():
    for stage, entry in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        assert "src/imgclf/cli.py" not in entry["deps"], stage


@pytest.mark.parametrize(
    "path",
    sorted(path for path in [*REPO.glob("stages/*.py"), *REPO.glob("src/imgclf/**/*.py")] if path != CLI),
    ids=lambda path: path.relative_to(REPO).as_posix(),
)
def test_no_lazy_imgclf_imports(path):
    assert not lazy_imgclf_imports(path), (
        f"{path.relative_to(REPO)}: imgclf imported inside a function at lines "
        f"{lazy_imgclf_imports(path)}: import at module level so dvc.yaml deps can be checked"
    )
