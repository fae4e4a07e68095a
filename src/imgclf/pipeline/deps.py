"""The dvc.yaml deps contract: a stage's code deps are its module plus exactly the project modules it reaches.

`python -m imgclf deps` prints each stage's code deps as its imports say and exits 1 if dvc.yaml
differs; `python -m imgclf deps --write` rewrites the deps lists (other deps, comments and the
rest of the file stay as they are). The imports are read from the source (no module is imported):
every import a stage's script reaches, except the MLflow tracking package (a view, never a source
of a DVC output) and docstring-only package files.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

# imgclf.tracking writes to MLflow only (the store is a view: nothing a DVC output holds comes from it),
# so editing it re-runs no stage; what only it imports is not a stage's dep either.
VIEW = "imgclf.tracking"
CODE_DEP = re.compile(r"^\s*-\s+((?:src|stages)/\S+\.py)\s*(#.*)?$")


def stage_command(stage: str) -> str:
    """The command dvc.yaml runs for a stage."""
    return f"python -m stages.{stage}"


def _file(root: Path, module: str) -> Path | None:
    """The project file of a module name (imgclf.* under src/, stages.*), or None for any other."""
    if module.split(".")[0] not in ("imgclf", "stages"):
        return None
    base = root / ("src" if module.startswith("imgclf") else "") / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(root: Path, path: Path) -> set[str]:
    """The project modules a file imports, anywhere in it (inside functions too), with their packages."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names
                         if _file(root, f"{node.module}.{alias.name}"))
    with_packages = set()
    for name in names:
        parts = name.split(".")
        with_packages.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {name for name in with_packages if _file(root, name)}


def _holds_code(path: Path) -> bool:
    """False for an __init__.py that holds only its docstring: it cannot change what a stage does."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return path.name != "__init__.py" or bool(body)


def imports(root: Path, stages: list[str]) -> dict[str, list[str]]:
    """{stage: the project files stages/<stage>.py reaches through its imports}, module file first.

    Every import counts, at module level or inside a function; imgclf.tracking (VIEW) and what only
    it reaches are left out, and so is an __init__.py that holds nothing but its docstring.
    """
    found = {}
    for stage in stages:
        seen, todo = set(), [f"stages.{stage}"]
        while todo:
            module = todo.pop()
            if module in seen or module == VIEW or module.startswith(VIEW + "."):
                continue
            seen.add(module)
            todo.extend(_imported(root, _file(root, module)))
        files = {_file(root, module) for module in seen}
        listed = sorted(path.relative_to(root).as_posix() for path in files if _holds_code(path))
        found[stage] = [f"stages/{stage}.py", *(path for path in listed if path != f"stages/{stage}.py")]
    return found


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
