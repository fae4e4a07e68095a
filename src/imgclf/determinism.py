"""Seeds and numeric precision: the two global switches every training stage sets first."""

from __future__ import annotations

import keras
import tensorflow as tf


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TF and Keras, and make TF ops deterministic (same params -> same bytes)."""
    keras.utils.set_random_seed(seed)
    # Deterministic kernels (and sequential stateful tf.data maps): a little slower, but two runs
    # with the same params write byte-identical metrics.
    tf.config.experimental.enable_op_determinism()


def set_precision(policy: str) -> None:
    """Set Keras' global dtype policy: float32, mixed_bfloat16 (AMX CPUs) or mixed_float16 (GPUs)."""
    keras.mixed_precision.set_global_policy(policy)
