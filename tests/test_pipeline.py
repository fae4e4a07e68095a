"""tf.data input from data/split: layout checks, hold-out, shapes, scaling, order, seeding."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from imgclf.data import tfdata
from imgclf.errors import UserError
from imgclf.training import augmentation


def batches_to_arrays(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_loads_train_validation_and_test(make_split, write_params):
    make_split(classes=("b", "a", "c"), train=10, test=4, size=(16, 16))
    config = write_params({"image.size": [16, 16], "data.validation_fraction": 0.2})
    data = tfdata.load_split(config, batch_size=4)

    assert data.class_names == ("a", "b", "c")
    assert data.class_counts == (10, 10, 10)
    assert data.train_size == 24 and data.steps_per_epoch == 6
    assert data.input_shape == (16, 16, 1)
    train_images, train_labels = batches_to_arrays(data.train)
    validation_images, _ = batches_to_arrays(data.validation)
    test_images, test_labels = batches_to_arrays(data.test)
    assert train_images.shape == (24, 16, 16, 1) and validation_images.shape == (6, 16, 16, 1)
    assert train_images.dtype == np.uint8 and train_images.max() > 200  # raw pixels: every model rescales
    assert train_labels.shape == (24, 3)  # one-hot, for categorical cross-entropy
    # Test split in file order: class a's four images, then b's, then c's.
    assert test_labels.argmax(axis=1).tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_no_stream_is_autotuned(make_split, write_params):
    # On 2 cores tf.data's tuning threads took the CPU from training; dropping an autotuned iterator stalled ~2 s.
    make_split(train=10, test=2)
    config = write_params({"image.size": [16, 16]})
    data = tfdata.load_split(config, batch_size=5)
    assert data.validation.options().autotune.enabled is False
    assert data.test.options().autotune.enabled is False
    assert data.train.options().autotune.enabled is False
    # What the stages build on the train stream inherits its options: augmented's and finetune's endless stream.
    augmented = augmentation.augment_dataset(data.train, config.augmentation, config.seed)
    assert augmented.options().autotune.enabled is False
    ordered, _, _ = tfdata.load_ordered(config, "test", batch_size=5)
    assert ordered.options().autotune.enabled is False
    arrays = tfdata.arrays_dataset(np.zeros((4, 3), "float32"), np.array([0, 1, 0, 1]), 2, batch_size=2, seed=1)
    assert arrays.options().autotune.enabled is False


def test_raw_pixels_resized_rgb_and_no_validation(make_split, write_params):
    make_split(train=4, test=2, size=(16, 16))
    config = write_params({"image.size": [32, 24], "image.color_mode": "rgb", "data.validation_fraction": 0.0})
    data = tfdata.load_split(config, batch_size=8)
    images, _ = batches_to_arrays(data.test)
    assert data.validation is None and data.train_size == 12
    assert images.shape == (6, 32, 24, 3) and images.max() > 200 and images.dtype == np.uint8  # raw pixels: models rescale


def test_epochs_reshuffle_and_runs_repeat(make_split, write_params):
    make_split(train=10, test=2)
    config = write_params({"image.size": [16, 16]})
    orders = []
    for _ in range(2):
        data = tfdata.load_split(config, batch_size=5)
        orders.append([batches_to_arrays(data.train)[0].sum(axis=(1, 2, 3)) for _ in range(2)])
    first_run, second_run = orders
    assert not np.array_equal(first_run[0], first_run[1])  # epochs differ
    np.testing.assert_array_equal(first_run[0], second_run[0])  # runs repeat
    np.testing.assert_array_equal(first_run[1], second_run[1])


def test_missing_split(workspace, write_params):
    with pytest.raises(UserError, match="data/split: not found: run the split stage first"):
        tfdata.load_split(write_params(), batch_size=4)


def test_empty_class_folder(make_split):
    root = make_split(train=2, test=2)
    for image in (root / "test" / "b").iterdir():
        image.unlink()
    with pytest.raises(UserError, match=r"test/b: class folder has no images"):
        tfdata.check_layout(root)


def test_one_class(make_split):
    root = make_split(classes=("only",), train=2, test=2)
    with pytest.raises(UserError, match=r"found 1 class folder\(s\) \(only\): a classifier needs at least two"):
        tfdata.check_layout(root)


def test_train_and_test_classes_differ(make_split):
    root = make_split(train=2, test=2)
    shutil.rmtree(root / "test" / "c")
    with pytest.raises(UserError, match=r"class folders differ \(only in train: \['c'\], only in test: \[\]\)"):
        tfdata.check_layout(root)


def test_nested_folder_in_a_class(make_split):
    root = make_split(train=2, test=2)
    (root / "train" / "a" / "more").mkdir()
    with pytest.raises(UserError, match=r"train/a/more: sub-folder inside a class folder"):
        tfdata.check_layout(root)
