"""Bottleneck features: streamed .npz files, shapes, labels, the offline-ImageNet stop with nothing written."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient

from imgclf.models import backbones
from imgclf.transfer import bottleneck, features

from helpers.workspace import STAGE_RUNS

TINY_BOTTLENECK = {"image.size": [16, 16], "bottleneck.batch_size": 8, "mlflow.log_model": False}


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")  # a bf16 test must not leak its policy


def one_hot_batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((images, np.eye(3, dtype="float32")[labels])).batch(batch_size)


def test_extract_streams_every_batch_and_is_byte_stable(tmp_path):
    images = np.random.default_rng(0).uniform(size=(10, 4, 4, 1)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3)])
    dataset = one_hot_batches(images, labels, 4)  # 4 + 4 + 2: a short last batch

    first = bottleneck.extract(model, dataset, 10, tmp_path / "a.npz")
    bottleneck.extract(model, dataset, 10, tmp_path / "b.npz")

    assert (first.count, first.feature_shape) == (10, (2, 2, 2))
    loaded = features.load("a", tmp_path)
    assert loaded.features.dtype == np.float32 and loaded.features.shape == (10, 2, 2, 2)
    np.testing.assert_allclose(loaded.features, model.predict(images, verbose=0), rtol=1e-6)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_compiled_forward_is_traced_once_for_every_batch_size():
    # One graph for every batch size: no retrace per short last batch or per split.
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3)])
    forward = bottleneck.compiled_forward(model)
    for size in (8, 3, 5, 8):
        assert forward(tf.zeros((size, 4, 4, 1))).shape == (size, 2, 2, 2)
    assert forward.experimental_get_tracing_count() == 1


def test_extract_refuses_a_wrong_count(tmp_path):
    images = np.zeros((5, 4, 4, 1), "float32")
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="yielded 5 images, expected 6"):
        bottleneck.extract(model, one_hot_batches(images, np.zeros(5, int), 2), 6, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="more than 4"):
        bottleneck.extract(model, one_hot_batches(images, np.zeros(5, int), 2), 4, tmp_path / "y.npz")


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_bottleneck_writes_features_labels_and_classes(
    precision, make_split, write_params, workspace, run_stage_script
):
    make_split()  # 3 classes, 12 train + 6 test images each, 16x16 grayscale
    params = write_params(TINY_BOTTLENECK | {"backbone.precision": precision})
    assert params.backbone.input_size == (32, 32)  # `auto`: the image size, at least 32x32

    run_stage_script("bottleneck")

    folder = workspace / "data" / "features"
    assert sorted(path.name for path in folder.iterdir()) == [
        "backbone.json", "classes.json", "test.npz", "train.npz"
    ]
    train, test = features.load("train", folder), features.load("test", folder)
    assert train.features.shape == (36, 1, 1, 512) and test.features.shape == (18, 1, 1, 512)
    assert train.features.dtype == np.float32  # whatever the precision they were computed in
    np.testing.assert_array_equal(test.labels, np.repeat([0, 1, 2], 6))  # file order, no shuffle
    assert features.read_classes(folder) == ("a", "b", "c")
    facts = json.loads((folder / "backbone.json").read_text())
    assert facts == {"backbone": "vgg16", "weights": "none", "input_size": [32, 32],
                     "precision": precision, "feature_shape": [1, 1, 512]}
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("image-classification").experiment_id], STAGE_RUNS)
    speed = run.data.metrics  # run-specific: MLflow only
    assert speed["bottleneck_images"] == 54 and speed["bottleneck_images_per_s"] > 0
    assert speed["bottleneck_gflops_per_s"] > 0
    assert speed["bottleneck_gflop_per_image"] == pytest.approx(0.626, rel=0.01)  # VGG16 at 32x32
    assert not (workspace / "metrics" / "bottleneck.json").exists()


def test_imagenet_offline_stops_the_stage_with_exit_2_and_writes_nothing(
    make_split, write_params, workspace, run_stage_script, tmp_path_factory, monkeypatch, capsys
):
    make_split()
    write_params(TINY_BOTTLENECK | {"backbone.weights": "imagenet"})
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("empty-keras-home")))
    monkeypatch.setattr(backbones, "weights_host_reachable", lambda timeout_s=3.0: False)
    before = sorted(path.relative_to(workspace) for path in (workspace / "data").rglob("*"))

    with pytest.raises(SystemExit) as exited:
        run_stage_script("bottleneck")

    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "imgclf: ImageNet weights for vgg16 are not cached and the network is unreachable: place "
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 in $KERAS_HOME/models, set "
        "backbone.weights to a file path, or set backbone.weights: none"
    )
    assert sorted(path.relative_to(workspace) for path in (workspace / "data").rglob("*")) == before
    assert not (workspace / "data" / "features").exists()


def test_missing_split_is_a_user_error(write_params, run_stage_script, capsys):
    write_params(TINY_BOTTLENECK)
    with pytest.raises(SystemExit) as exited:
        run_stage_script("bottleneck")
    assert exited.value.code == 2
    assert "run the split stage first" in capsys.readouterr().err
