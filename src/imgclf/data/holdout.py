"""The validation hold-out every training stage uses: one seeded algorithm, Keras' own.

`keras.utils.image_dataset_from_directory(validation_split=f, seed=s)` shuffles the file list with
`np.random.RandomState(s)` and holds out its last `int(f * n)` files. The image stages let Keras
do exactly that; the top stage applies the same algorithm to the rows of the features file, which
lists the images in the same order. tests/test_holdout.py proves the two pick the same images.
"""

from __future__ import annotations

import numpy as np


def held_out(count: int, fraction: float) -> int:
    """How many of `count` items go to validation: Keras' int(fraction * count)."""
    return int(fraction * count)


def split(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices into `count` items, each in Keras' shuffled order.

    No validation when `fraction` rounds down to zero items (Keras would then train on nothing).
    """
    order = np.arange(count)
    np.random.RandomState(seed).shuffle(order)
    held = held_out(count, fraction)
    if held == 0:
        return order, order[:0]
    return order[:-held], order[-held:]
