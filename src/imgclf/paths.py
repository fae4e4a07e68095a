"""Every path the pipeline reads or writes, in one place (dvc.yaml names the same ones).

Paths are relative to the workspace: the project root for `dvc repro`, a temp copy of it for
`dvc exp run --temp/--queue`. The MLflow store is the exception: it always lives in the *main*
workspace (DVC_ROOT), so queued experiments land beside ordinary runs.
"""

from __future__ import annotations

import os
from pathlib import Path

SPLITS = ("train", "test")  # the split's folders, and the features' files, in this order

DATA = Path("data")
RAW = DATA / "raw"  # download's output: images.npz (array sources) or train.zip (dogs-vs-cats)
RAW_ARRAYS = RAW / "images.npz"
RAW_ARCHIVE = RAW / "train.zip"
RAW_INFO = RAW / "source.json"  # what was downloaded: source, file, sha256, counts
RAW_IMAGES = RAW / "images.zip"  # your own images (folder/csv), snapshotted
RAW_PACK = RAW / "pack"  # your own images with data.storage shards: a pack (imgclf.data.shards)
RAW_LABELS = RAW / "labels.csv"  # csv: path (in images.zip), label, and the CSV's other columns
SPLIT = DATA / "split"  # split's output: train/<class>/*, test/<class>/*, manifest.csv (data.storage shards:
# manifest.csv naming each image's shard and offset, and pack/ for the images not already in data/raw/pack)
MANIFEST = SPLIT / "manifest.csv"
FEATURES = DATA / "features"  # bottleneck's output: train.npz, test.npz, classes.json, backbone.json

MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")
LOGS = Path("logs")  # TensorBoard event files: run-specific, so outside DVC; logged to MLflow
# A training stage's state at its last epoch (imgclf.training.checkpoint): outside DVC, git-ignored,
# removed when the stage completes.
CHECKPOINTS = Path(".checkpoints")
EXPORTS = MODELS / "export"  # the export stage's files: <stage>/saved_model/, *.tflite, model.onnx, classifier.json
LATENCY_PLOT = REPORTS / "accuracy_vs_latency.png"  # run-specific (timings): outside DVC, logged to MLflow

TEAM_DIR = Path(".team")  # make server's state: PostgreSQL cluster, S3 objects, secrets (git-ignored)

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def model_dir(stage: str) -> Path:
    """models/<stage>/: the stage's model files."""
    return MODELS / stage


def model_file(stage: str) -> Path:
    """models/<stage>/model.keras."""
    return model_dir(stage) / "model.keras"


def classifier_info(stage: str) -> Path:
    """models/<stage>/classifier.json: class names and image spec, beside model.keras."""
    return model_dir(stage) / "classifier.json"


def top_head_file() -> Path:
    """models/top/head.keras: top's features-only head, which finetune starts from."""
    return model_dir("top") / "head.keras"


def svm_file() -> Path:
    """models/svm/svm.skops: the svm stage's scikit-learn model on features (skops, not pickle)."""
    return model_dir("svm") / "svm.skops"


def metrics_file(stage: str) -> Path:
    """metrics/<stage>.json: DVC metrics, only what data and params determine."""
    return METRICS / f"{stage}.json"


def plots_dir(stage: str) -> Path:
    """plots/<stage>/: history.csv, confusion.csv and PNGs for people."""
    return PLOTS / stage


def tensorboard_dir(stage: str) -> Path:
    """logs/<stage>/: this run's TensorBoard logs (not DVC-tracked: event files hold timestamps)."""
    return LOGS / stage


def user_path(value: str) -> Path:
    """A path from params.yaml (data.path, data.archive): a relative one is relative to the main
    workspace, so that it also resolves in a DVC temp workspace (`dvc exp run --temp/--queue`)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else main_workspace() / path


def main_workspace() -> Path:
    """The project root whose MLflow store every run uses, even from a DVC temp workspace."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()

