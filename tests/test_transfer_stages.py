"""top and finetune end to end on tiny data: outputs, determinism, finetune starting from top."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from imgclf import paths
from imgclf.inference import model_file
from imgclf.models import finetune
from imgclf.transfer import features

PLOT_FILES = sorted(["confusion.csv", "confusion.png", "history.csv", "learning_curves.png", "mistakes.png", "gradcam.png"])


def run_tags(workspace: Path, stage: str) -> dict[str, str]:
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`dvc.stage` = '{stage}'")
    return runs[0].data.tags


def test_top_stage_writes_deterministic_outputs(
    with_features, run_stage_script, workspace
):
    with_features()
    run_stage_script("top")
    first = (workspace / "metrics" / "top.json").read_bytes()
    files = {name: (workspace / "models" / "top" / name).read_bytes() for name in ("model.keras", "head.keras", "classifier.json")}
    run_stage_script("top")

    assert (workspace / "metrics" / "top.json").read_bytes() == first, "same params, same bytes"
    for name, content in files.items():
        assert (workspace / "models" / "top" / name).read_bytes() == content, name
    metrics = json.loads(first)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert (metrics["backbone"], metrics["weights"], metrics["precision"]) == ("vgg16", "none", "float32")
    assert metrics["feature_shape"] == [1, 1, 512]
    assert metrics["train_images"] == 29 and metrics["test_images"] == 18  # 36 - round(36 * 0.2)
    assert sorted(path.name for path in (workspace / "plots" / "top").iterdir()) == PLOT_FILES
    head = keras.models.load_model(workspace / "models" / "top" / "head.keras", safe_mode=True)
    assert [layer.__class__.__name__ for layer in head.layers] == ["Flatten", "Dense", "Dropout", "Dense"]
    assert head.output_shape == (None, 3)
    # What a user deploys: uint8 images of the pipeline's size through the backbone into that head.
    classifier = keras.models.load_model(workspace / "models" / "top" / "model.keras", safe_mode=True)
    assert classifier.input.dtype == "uint8" and classifier.input_shape == (None, 16, 16, 1)
    assert classifier.output_shape == (None, 3) and classifier.layers[-1].name == "top"
    assert metrics["total_params"] == classifier.count_params()
    tags = run_tags(workspace, "top")
    assert (tags["backbone"], tags["weights"]) == ("vgg16", "none")


def test_finetune_starts_from_tops_trained_head(with_features, run_stage_script, workspace):
    params = with_features()
    run_stage_script("top")
    top_model = model_file.load(paths.top_head_file(), "run top")

    model, frozen = finetune.build(params.backbone, params.seed, None, model_file.load(paths.top_head_file(), "run top"), (16, 16, 1), 3,
                                   "last_block")

    head = next(layer for layer in model.layers if layer.name == "top")
    assert frozen == 14
    for before, after in zip(top_model.get_weights(), head.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    # Same backbone, same preprocessing as the bottleneck: on test images it predicts what top
    # predicted on their features, and so does top's own deployable model.
    test = features.load("test")
    images = np.stack([
        np.asarray(keras.utils.load_img(path, color_mode="grayscale"), dtype="uint8")[..., None]
        for path in sorted((workspace / "data" / "split" / "test").glob("*/*.png"))
    ])
    expected = top_model.predict(test.features, verbose=0)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-5)
    deployable = model_file.load(paths.model_file("top"), "run top")
    np.testing.assert_allclose(deployable.predict(images, verbose=0), expected, atol=1e-5)


def test_finetune_stage_trains_the_last_block_and_reports_its_weights(
    with_features, run_stage_script, workspace
):
    with_features()
    run_stage_script("top")
    run_stage_script("finetune")

    metrics = json.loads((workspace / "metrics" / "finetune.json").read_text())
    assert (metrics["backbone"], metrics["weights"], metrics["frozen_layers"]) == ("vgg16", "none", 14)
    assert metrics["epochs"] == 1 and metrics["test_images"] == 18
    # block5 (3 convolutions) and the head train; blocks 1-4 do not.
    block5 = 3 * (3 * 3 * 512 * 512 + 512)
    head = 512 * 256 + 256 + 256 * 3 + 3
    assert metrics["trainable_params"] == block5 + head
    assert sorted(path.name for path in (workspace / "plots" / "finetune").iterdir()) == PLOT_FILES
    model = keras.models.load_model(workspace / "models" / "finetune" / "model.keras", safe_mode=True)
    assert model.output_shape == (None, 3)
    tags = run_tags(workspace, "finetune")
    assert (tags["backbone"], tags["weights"]) == ("vgg16", "none")


@pytest.mark.slow
def test_finetune_metrics_are_deterministic(with_features, run_stage_script, workspace):
    with_features()
    run_stage_script("top")
    run_stage_script("finetune")
    first = (workspace / "metrics" / "finetune.json").read_bytes()
    run_stage_script("finetune")
    assert (workspace / "metrics" / "finetune.json").read_bytes() == first
