"""dvc.yaml is complete and minimal: every stage's code deps are exactly what its script imports.

For each stage run as `python stages/<name>.py`, a subprocess imports the script the way Python
runs it (stages/ first on sys.path), collects the `imgclf*` modules it loaded, and maps them to
files. Those files plus the script must be exactly the stage's .py deps: a missing one would
leave a stale result after a code change, an extra one re-runs a stage for nothing.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

# Runs in a fresh interpreter: imports each stage script in turn, forgetting the imgclf modules
# between scripts (third-party ones stay loaded: that only saves time).
IMPORT_PROBE = r"""
import importlib.util, json, sys
from pathlib import Path

repo, scripts = Path(sys.argv[1]), sys.argv[2:]
sys.path.insert(0, str(repo / "stages"))
sys.path.insert(1, str(repo / "src"))
found = {}
for script in scripts:
    for name in [name for name in sys.modules if name == "imgclf" or name.startswith("imgclf.")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location("stage_under_test", repo / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = []
    for name, loaded in sys.modules.items():
        if name == "imgclf" or name.startswith("imgclf."):
            files.append(Path(loaded.__file__).resolve().relative_to(repo).as_posix())
    found[script] = sorted(files)
print("IMPORTS=" + json.dumps(found))
"""


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def script_of(stage: dict) -> str | None:
    """stages/<name>.py for a `python stages/<name>.py` command, else None."""
    words = stage["cmd"].split() if isinstance(stage.get("cmd"), str) else []
    if len(words) >= 2 and words[0] in ("python", "python3") and words[1].startswith("stages/"):
        return words[1]
    return None


def entry_names(entries: list) -> list[str]:
    """Paths (or params keys) of a dvc.yaml list whose items are strings or one-key mappings."""
    return [item if isinstance(item, str) else next(iter(item)) for item in entries or []]


@pytest.fixture(scope="module")
def imports() -> dict[str, list[str]]:
    scripts = sorted({script for stage in dvc_stages().values() if (script := script_of(stage))})
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, str(REPO), *scripts],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("IMPORTS="))
    return json.loads(line[len("IMPORTS="):])


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_code_deps_are_exactly_the_imports(name, imports):
    stage = dvc_stages()[name]
    script = script_of(stage)
    assert script, f"{name}: cmd should be `python stages/<name>.py`, got {stage.get('cmd')!r}"
    deps = entry_names(stage.get("deps"))
    code_deps = {dep for dep in deps if dep.endswith(".py")}
    expected = {script, *imports[script]}
    assert not code_deps - expected, f"{name}: deps not imported by {script}: {sorted(code_deps - expected)}"
    assert not expected - code_deps, f"{name}: imports missing from deps: {sorted(expected - code_deps)}"
    folders = [dep for dep in deps if dep.startswith(("src", "stages")) and not dep.endswith(".py")]
    assert not folders, f"{name}: code folders as deps re-run the stage for any change: {folders}"


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


@pytest.mark.parametrize(
    "path",
    sorted([*REPO.glob("stages/*.py"), *REPO.glob("src/imgclf/**/*.py")]),
    ids=lambda path: path.relative_to(REPO).as_posix(),
)
def test_no_lazy_imgclf_imports(path):
    assert not lazy_imgclf_imports(path), (
        f"{path.relative_to(REPO)}: imgclf imported inside a function at lines "
        f"{lazy_imgclf_imports(path)}: import at module level so dvc.yaml deps can be checked"
    )
