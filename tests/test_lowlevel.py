"""The low-level loop's summaries: the chapter's statistics, histograms in TensorBoard's own format."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import summary_v2

from imgclf.training import lowlevel


def test_statistics_match_numpy_and_tensorboards_histogram():
    data = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=(40, 7, 7, 5)).astype("float32"))
    mean, stddev, minimum, maximum, buckets = (value.numpy() for value in lowlevel._statistics(data))
    values = data.numpy().ravel()
    np.testing.assert_allclose([mean, stddev, minimum, maximum], [values.mean(), values.std(), values.min(), values.max()],
                               rtol=1e-5)
    reference = summary_v2._buckets(data, bucket_count=lowlevel.HISTOGRAM_BUCKETS).numpy()
    assert buckets.shape == reference.shape == (30, 3)
    np.testing.assert_allclose(buckets[:, :2], reference[:, :2], rtol=1e-6)
    assert buckets[:, 2].sum() == values.size
    assert np.abs(buckets[:, 2] - reference[:, 2]).max() <= 2  # float32 vs float64 edges: a value on a boundary


def test_a_constant_tensor_puts_every_count_in_the_last_bucket():
    buckets = lowlevel._statistics(tf.fill([4, 3], 0.5))[4].numpy()
    reference = summary_v2._buckets(tf.fill([4, 3], 0.5), bucket_count=lowlevel.HISTOGRAM_BUCKETS).numpy()
    np.testing.assert_array_equal(buckets, reference)
