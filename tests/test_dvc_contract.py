"""dvc.yaml is complete and minimal: stage name = module name, params = the stage list's sections, and
code deps are exactly what the imports reach.

For each stage, imgclf.pipeline.deps (the same code as `python -m imgclf deps`) reads the imports its
script reaches. Those files must be exactly the stage's .py deps: a missing one would leave a stale
result after a code change, an extra one re-runs a stage for nothing.
"""

from __future__ import annotations

import pytest
import yaml

from imgclf.pipeline import deps, stages

from helpers.workspace import REPO


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


def test_every_stage_reads_exactly_the_sections_the_stage_list_names():
    for name, entry in dvc_stages().items():
        sections = {key.split(".")[0] for key in entry_names(entry.get("params"))}
        assert sections == set(stages.get(name).sections), name
    assert [stage.name for stage in stages.STAGES] == list(dvc_stages())


def test_no_stage_imports_the_command_line():
    for stage, entry in dvc_stages().items():
        assert "src/imgclf/cli.py" not in entry["deps"], stage


def test_deps_follow_every_import_but_the_tracking_view_and_empty_packages(tmp_path):
    """Imports inside functions count; imgclf.tracking and what only it reaches do not, nor an __init__.py
    that holds only its docstring."""
    files = {
        "stages/probe.py": "from imgclf.a import b\n",
        "src/imgclf/__init__.py": '"""Docstring only."""\n',
        "src/imgclf/a/__init__.py": 'VALUE = 1\n',
        "src/imgclf/a/b.py": "def f():\n    from imgclf import c\n    from imgclf.tracking import runs\n",
        "src/imgclf/c.py": "import os\n",
        "src/imgclf/tracking/__init__.py": "",
        "src/imgclf/tracking/runs.py": "from imgclf import d\n",
        "src/imgclf/d.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert deps.imports(tmp_path, ["probe"]) == {"probe": [
        "stages/probe.py", "src/imgclf/a/__init__.py", "src/imgclf/a/b.py", "src/imgclf/c.py"]}


def test_the_stage_list_names_each_model_and_features_stage_data_deps():
    """imgclf.training.checkpoint keys a stage's checkpoint by these inputs: they must be dvc.yaml's own."""
    for name, entry in dvc_stages().items():
        stage = stages.get(name)
        if stage.kind in ("model", "features"):
            data_deps = [dep for dep in entry["deps"] if not dep.endswith(".py")]
            assert data_deps == list(stage.inputs), name


def test_checkpoint_frequency_is_no_stage_dep():
    """How often a stage saves its state never changes what it outputs: changing it re-runs nothing."""
    for name, entry in dvc_stages().items():
        names = entry_names(entry.get("params"))
        assert "train" not in names and "train.checkpoint" not in names, name
