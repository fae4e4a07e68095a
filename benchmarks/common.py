"""What every benchmark shares: paths, params with overrides, workspaces, generated data, results.

Generated data lives in benchmarks/work/ (git-ignored) and is made once: a fresh clone makes it on
its first `make bench`, later runs reuse it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
RESULTS = HERE / "results"
VENV_BIN = Path(sys.executable).parent

sys.path.insert(0, str(HERE))
# The imgclf of this checkout, not whichever one the venv's editable install points to, and its
# stage modules (`import stages.top`).
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from imgclf.params import apply_overrides, set_dotted  # noqa: E402, F401 - shared with the benchmarks

from machine import machine_info  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --- params and workspaces -----------------------------------------------------------------


def raw_params(overrides: dict[str, Any] | None = None) -> dict:
    """The project's params.yaml as a mapping, with dotted overrides applied."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return raw


def write_params(folder: Path, overrides: dict[str, Any] | None = None):
    """Write params.yaml (with overrides) into `folder`; return the validated, resolved Params."""
    from imgclf import params as params_module

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw_params(overrides), sort_keys=False))
    return params_module.load(folder / "params.yaml")


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[Path]:
    """cwd = folder (the project's paths are relative to the workspace), MLflow store in it."""
    folder.mkdir(parents=True, exist_ok=True)
    previous = Path.cwd()
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    os.chdir(folder)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ.pop("DVC_ROOT", None)
    try:
        yield folder
    finally:
        os.chdir(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class NullRun:
    """A stand-in for imgclf.tracking.runs.StageRun: a stage's recipe without MLflow I/O.

    It keeps the metrics a recipe logs (`metrics`), e.g. the bottleneck stage's throughput.
    """

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def log_params(self, *args: Any, **kwargs: Any) -> None: ...
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.metrics.update(metrics)

    def log_history(self, *args: Any, **kwargs: Any) -> None: ...
    def set_tags(self, *args: Any, **kwargs: Any) -> None: ...
    def log_artifact(self, *args: Any, **kwargs: Any) -> None: ...


def stage_env(workspace: Path, source_root: Path = ROOT) -> dict[str, str]:
    """Environment for a stage script or dvc in `workspace`: the venv, its own MLflow store.

    PYTHONPATH puts `source_root`/src first: imgclf is installed editable from /work/main/src, so a
    clone would otherwise run the main checkout's code instead of its own.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("DVC_")}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=f"{source_root / 'src'}{os.pathsep}{source_root}",  # imgclf, and `-m stages.<stage>`
        MLFLOW_TRACKING_URI=f"sqlite:///{workspace / 'mlflow.db'}",
        DVC_NO_ANALYTICS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com",
    )
    return env


# Peak RSS through a small launcher: a process started straight from this one (vfork, then exec) carries
# this process's own high-water mark in its ru_maxrss, so a benchmark that had grown would be measured
# as its command's peak. The launcher's child starts from the launcher's few MiB instead.
LAUNCHER = ("import resource, subprocess, sys\n"
            "code = subprocess.call(sys.argv[2:])\n"
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
            "sys.exit(code)\n")


def run_measured(command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run a command; wall seconds, peak RSS (MiB, the largest of the process and the children it waited for), output."""
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as peak:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", LAUNCHER, peak.name, *command], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - started
        text = done.stdout.decode(errors="replace")
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}) in {cwd}:\n{text[-4000:]}")
        return {"seconds": seconds, "peak_rss_mib": int(peak.read()) / 1024, "output": text}


def clone_project(prefix: str) -> Path:
    """A fresh `git clone` of the committed project in a temp folder under benchmarks/work."""
    import tempfile

    WORK.mkdir(parents=True, exist_ok=True)
    clone = Path(tempfile.mkdtemp(prefix=prefix, dir=WORK)) / "project"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    return clone


def dvc_repro(project: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    """`dvc repro` in `project`, its output timestamped line by line: total seconds, the stages
    that ran (in order) with the seconds from each one's "Running stage" line to the next's."""
    import re

    started = time.perf_counter()
    process = subprocess.Popen(["dvc", "repro", *args], cwd=project, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    lines: list[tuple[float, str]] = []
    for line in process.stdout:  # type: ignore[union-attr]
        lines.append((time.perf_counter() - started, line.rstrip("\n")))
    process.wait()
    total = time.perf_counter() - started
    if process.returncode != 0:
        tail = "\n".join(text for _, text in lines[-40:])
        raise RuntimeError(f"dvc repro {' '.join(args)} failed (exit {process.returncode}) in {project}:\n{tail}")
    marks = [(at, match.group(1)) for at, text in lines
             if (match := re.match(r"Running stage '([^']+)'", text.strip()))]
    skipped = [match.group(1) for _, text in lines
               if (match := re.match(r"Stage '([^']+)' didn't change, skipping", text.strip()))]
    stage_seconds = {name: (marks[index + 1][0] if index + 1 < len(marks) else total) - at
                     for index, (at, name) in enumerate(marks)}
    return {"seconds": total, "ran": [name for _, name in marks], "skipped": skipped,
            "stage_seconds": stage_seconds, "output_tail": [text for _, text in lines[-3:]]}


# --- generated data ------------------------------------------------------------------------


def noop_repros(project: Path, env: dict[str, str], repeats: int = 3) -> dict[str, Any]:
    """A first `dvc repro`, then `repeats` timed ones that must run nothing: their seconds and median."""
    import statistics

    first = dvc_repro(project, env)
    noops = []
    for _ in range(repeats):
        run = dvc_repro(project, env)
        assert not run["ran"], run
        noops.append(run["seconds"])
    return {"first_repro_s": first["seconds"], "noop_s": noops, "noop_median_s": statistics.median(noops)}


def photo(rng: np.random.Generator, label: int, width: int, height: int) -> Image.Image:
    """A photo-like RGB image: smooth background, a few blurred shapes whose colour hints at the
    class, fine noise (so JPEG size and decode cost resemble a real photo's)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    tilt = rng.uniform(-0.25, 0.25, size=(2, 3))
    pixels = base + xx[..., None] * tilt[0] * 0.5 + yy[..., None] * tilt[1] * 0.5
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    hue = (200, 120, 60) if label == 0 else (60, 110, 190)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.uniform(0, width * 0.8), rng.uniform(0, height * 0.8)
        x1, y1 = x0 + rng.uniform(20, width * 0.5), y0 + rng.uniform(20, height * 0.5)
        colour = tuple(int(np.clip(c + rng.normal(0, 40), 0, 255)) for c in hue)
        (draw.ellipse if rng.random() < 0.6 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, size=(height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def photo_split(name: str, train_per_class: int, test_per_class: int, sides: tuple[int, int] = (300, 500)) -> Path:
    """benchmarks/work/<name>/split/{train,test}/{cat,dog}/*.jpg: dogs-vs-cats-like photos, made once."""
    root = WORK / name / "split"
    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, class_name in enumerate(("cat", "dog")):
            folder = root / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                width, height = (int(side) for side in rng.integers(sides[0], sides[1] + 1, size=2))
                (folder / f"{class_name}.{index}.jpg").write_bytes(jpeg_bytes(photo(rng, label, width, height)))
    done.write_text("ok\n")
    return root


def kaggle_zip(images: int, sides: tuple[int, int] = (48, 96)) -> Path:
    """benchmarks/work/archives/train-<images>.zip: Kaggle's layout (train/cat.N.jpg, train/dog.N.jpg)."""
    target = WORK / "archives" / f"train-{images}.zip"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(images)
    temp = target.with_suffix(".partial")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_STORED) as archive:
        for index in range(images // 2):
            for label, class_name in enumerate(("cat", "dog")):
                width, height = (int(side) for side in rng.integers(sides[0], sides[1] + 1, size=2))
                archive.writestr(f"train/{class_name}.{index}.jpg", jpeg_bytes(photo(rng, label, width, height)))
    temp.rename(target)
    return target


# --- results -------------------------------------------------------------------------------


def load_now() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def write_result(name: str, figures: dict[str, Any], load_before: list[float]) -> Path:
    """benchmarks/results/<name>.json: the figures, the machine, the load average before and after."""
    machine = machine_info()
    machine["load_average_1_5_15"] = load_before
    machine["load_average_after"] = load_now()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine, **figures}, indent=2) + "\n")
    return path


def ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")
