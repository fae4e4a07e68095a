"""One validation hold-out for every stage: Keras' own, applied to image folders and feature rows alike."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.data import holdout


def test_split_is_seeded_disjoint_and_complete():
    train, validation = holdout.split(50, 0.2, seed=3)
    again = holdout.split(50, 0.2, seed=3)
    assert len(validation) == 10 and len(train) == 40
    assert not set(train) & set(validation) and set(train) | set(validation) == set(range(50))
    np.testing.assert_array_equal(train, again[0])
    assert not set(holdout.split(50, 0.2, seed=4)[1]) == set(validation)
    assert len(holdout.split(50, 0.0, seed=3)[1]) == 0


def test_a_fraction_that_rounds_to_nothing_holds_out_nothing():
    train, validation = holdout.split(4, 0.1, seed=0)
    assert len(validation) == 0 and sorted(train) == [0, 1, 2, 3]


@pytest.mark.parametrize(("count", "fraction", "seed"), [(36, 0.2, 42), (57, 0.1, 7), (10, 0.3, 0)])
def test_picks_the_files_keras_holds_out(count, fraction, seed, make_split, workspace):
    # The image stages let image_dataset_from_directory(validation_split=..., seed=...) hold out
    # files; the top stage applies holdout.split to the features' rows, which list the same files
    # in the same order (file order, classes sorted). Both must pick the same images.
    classes = ("a", "b", "c")
    per_class = -(-count // len(classes))
    root = make_split(classes=classes, train=per_class, test=1)
    files = sorted(str(path) for path in (root / "train").glob("*/*.png"))
    count = len(files)
    _, keras_validation = keras.utils.image_dataset_from_directory(
        root / "train", validation_split=fraction, subset="both", seed=seed, shuffle=True,
        image_size=(16, 16), batch_size=None, verbose=False,
    )
    _, rows = holdout.split(count, fraction, seed)
    assert [Path(path).as_posix() for path in keras_validation.file_paths] == [Path(files[row]).as_posix() for row in rows]
