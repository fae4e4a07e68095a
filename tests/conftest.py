"""Shared fixtures: a temp workspace with its own params.yaml and MLflow store, tiny image folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from imgclf.params import set_dotted

from helpers.workspace import REPO, TINY_TRAINING, TINY_TRANSFER, pattern_image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Stage processes run as `python -m stages.<stage>` in temp workspaces: the repo's stages/ must be
# importable from there (a DVC project's own copy still wins: for -m, the cwd comes first).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project workspace: cwd, the repo's params.yaml, a private SQLite MLflow store."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path


@pytest.fixture
def write_params(workspace: Path) -> Callable[..., Any]:
    """write_params({"data.train_per_class": 4, ...}) -> validated Params, also saved to params.yaml."""
    from imgclf import params as params_module

    def write(overrides: dict[str, Any] | None = None) -> params_module.Params:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        for key, value in (overrides or {}).items():
            set_dotted(raw, key, value)
        (workspace / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        return params_module.load(workspace / "params.yaml")

    return write


@pytest.fixture
def make_split(workspace: Path) -> Callable[..., Path]:
    """Write data/split/{train,test}/<class>/*.png with learnable patterns (+ a manifest)."""

    def make(classes: tuple[str, ...] = ("a", "b", "c"), train: int = 12, test: int = 6,
             size: tuple[int, int] = (16, 16), rgb: bool = False) -> Path:
        root = workspace / "data" / "split"
        rows = ["path,class,split,sha256,width,height"]
        for label, name in enumerate(classes):
            for split, count in (("train", train), ("test", test)):
                folder = root / split / name
                folder.mkdir(parents=True, exist_ok=True)
                for index in range(count):
                    path = folder / f"{index:04d}.png"
                    pattern_image(label, index + (10_000 if split == "test" else 0), size, rgb).save(path)
                    rows.append(f"{split}/{name}/{path.name},{name},{split},x,{size[1]},{size[0]}")
        (root / "manifest.csv").write_text("\n".join(rows) + "\n")
        return root

    return make


@pytest.fixture(scope="session")
def mnist_sample_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images.npz as the download stage writes it for mnist-sample, built once per session."""
    from imgclf.data import sources

    target = tmp_path_factory.mktemp("mnist-sample") / "images.npz"
    sources.save_arrays(target, sources.load_mnist_sample())
    return target


@pytest.fixture
def raw_mnist_sample(workspace: Path, mnist_sample_npz: Path) -> Path:
    """The workspace's data/raw/ as the download stage leaves it for mnist-sample."""
    import shutil

    raw = workspace / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(mnist_sample_npz, raw / "images.npz")
    return raw


@pytest.fixture
def tiny_training(make_split: Callable[..., Path], write_params: Callable[..., Any]) -> Callable[..., Any]:
    """tiny_training({"baseline.epochs": 2}) -> Params: a tiny split plus params for fast training."""

    def setup(overrides: dict[str, Any] | None = None) -> Any:
        make_split()
        return write_params(TINY_TRAINING | (overrides or {}))

    return setup


@pytest.fixture
def with_features(make_split: Callable[..., Path], write_params: Callable[..., Any],
                  run_stage_script: Callable[[str], None]) -> Callable[..., Any]:
    """A tiny split (3 classes, 16x16) and its VGG16 (weights none, 32x32) features."""

    def setup(overrides: dict[str, Any] | None = None) -> Any:
        make_split()
        params = write_params(TINY_TRANSFER | (overrides or {}))
        run_stage_script("bottleneck")
        return params

    return setup


@pytest.fixture
def run_stage_script(workspace: Path) -> Callable[[str], None]:
    """run_stage_script("baseline"): run stages/baseline.py in-process, as `python -m stages.baseline`."""
    import runpy
    import sys

    def run(name: str) -> None:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        runpy.run_module(f"stages.{name}", run_name="__main__", alter_sys=False)

    return run


@pytest.fixture(scope="session")
def mlflow_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated SQLite MLflow store, made once (creating one costs seconds)."""
    from mlflow.tracking import MlflowClient

    database = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


@pytest.fixture
def mlflow_store(workspace: Path, mlflow_store_template: Path) -> Path:
    """The workspace's MLflow store (MLFLOW_TRACKING_URI points at it), already migrated."""
    import shutil

    database = workspace / "mlflow.db"
    shutil.copy(mlflow_store_template, database)
    return database


@pytest.fixture(scope="module")
def team():
    """`python -m imgclf server` (PostgreSQL + S3 endpoint + MLflow) for one test module (helpers.team_server)."""
    from helpers.team_server import TeamServer

    server = TeamServer()
    server.start()
    yield server
    server.stop()
    server.remove()
