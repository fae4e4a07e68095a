"""The dvc.yaml deps contract: a stage's code deps are its module plus exactly the imgclf modules it imports.

`python -m imgclf deps` prints each stage's code deps as its imports say and exits 1 if dvc.yaml
differs; `python -m imgclf deps --write` rewrites the deps lists (other deps, comments and the
rest of the file stay as they are). The imports are found by importing every stage module in a
fresh interpreter, the way `python -m stages.<stage>` loads it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

# Imports each stage module in turn, forgetting the project's modules between stages (third-party
# ones stay loaded: that only saves time), and prints the project files each one loaded.
PROBE = r"""
import importlib, json, sys
from pathlib import Path

root, names = Path(sys.argv[1]).resolve(), sys.argv[2:]
sys.path[:0] = [str(root), str(root / "src")]
found = {}
for name in names:
    for module in [m for m in sys.modules if m.split(".")[0] in ("imgclf", "stages")]:
        del sys.modules[module]
    importlib.import_module(f"stages.{name}")
    files = set()
    for module, loaded in list(sys.modules.items()):
        if module.split(".")[0] in ("imgclf", "stages") and getattr(loaded, "__file__", None):
            files.add(Path(loaded.__file__).resolve().relative_to(root).as_posix())
    found[name] = sorted(files)
print("IMPORTS=" + json.dumps(found))
"""
CODE_DEP = re.compile(r"^\s*-\s+((?:src|stages)/\S+\.py)\s*(#.*)?$")


def stage_command(stage: str) -> str:
    """The command dvc.yaml runs for a stage."""
    return f"python -m stages.{stage}"


def imports(root: Path, stages: list[str]) -> dict[str, list[str]]:
    """{stage: the project files `python -m stages.<stage>` imports}, module file first."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(root), *stages], capture_output=True, text=True, cwd=root,
        timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing the stage modules failed:\n{result.stderr[-3000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("IMPORTS="))
    found = json.loads(line[len("IMPORTS="):])
    return {name: [f"stages/{name}.py", *(f for f in files if f != f"stages/{name}.py")] for name, files in found.items()}


def declared(dvc_yaml: Path) -> dict[str, list[str]]:
    """{stage: the .py deps dvc.yaml lists for it}."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    return {
        name: [dep for dep in (entry if isinstance(entry, str) else next(iter(entry)) for entry in stage.get("deps") or [])
               if dep.endswith(".py")]
        for name, stage in stages.items()
    }


def rewrite(text: str, wanted: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each stage's code deps replaced by `wanted[stage]` (module first).

    Non-code deps keep their order and comments and follow the stage's module.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage = None
    index = 0
    while index < len(lines):
        line = lines[index]
        header = re.match(r"^  ([A-Za-z0-9_-]+):\s*$", line)
        if header:
            stage = header.group(1)
        if stage in wanted and re.match(r"^    deps:\s*$", line):
            out.append(line)
            index += 1
            others = []
            while index < len(lines) and re.match(r"^      (-|#)", lines[index]):
                if not CODE_DEP.match(lines[index]):
                    others.append(lines[index])
                index += 1
            code = wanted[stage]
            out += [f"      - {code[0]}\n", *others, *(f"      - {path}\n" for path in code[1:])]
            continue
        out.append(line)
        index += 1
    return "".join(out)


def main(root: Path, write: bool) -> int:
    """Print the deps each stage's imports call for; rewrite dvc.yaml with `write`. 1 if it differed."""
    dvc_yaml = root / "dvc.yaml"
    have = declared(dvc_yaml)
    wanted = imports(root, sorted(have))
    drifted = sorted(name for name in have if sorted(have[name]) != sorted(wanted[name]))
    for name in sorted(wanted):
        mark = "  (dvc.yaml differs)" if name in drifted else ""
        print(f"{name}:{mark}\n" + "".join(f"  - {path}\n" for path in wanted[name]), end="")
    if write and drifted:
        dvc_yaml.write_text(rewrite(dvc_yaml.read_text(encoding="utf-8"), wanted), encoding="utf-8")
        print(f"rewrote the deps of {', '.join(drifted)} in {dvc_yaml}")
        return 0
    return 1 if drifted else 0
