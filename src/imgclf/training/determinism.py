"""Seeds and numeric precision: the two global switches every training stage sets first."""

from __future__ import annotations

import keras
import tensorflow as tf


def seed_everything(seed: int) -> None:
    """A clean Keras session; Python, NumPy, TF and Keras seeded; TF ops deterministic.

    Same params -> same bytes: the clean session restarts Keras' layer-name counters, so the names
    saved in model.keras do not depend on what else ran in this process before.
    """
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    # Deterministic kernels (and sequential stateful tf.data maps): a little slower, but two runs
    # with the same params write byte-identical metrics.
    tf.config.experimental.enable_op_determinism()


def set_precision(policy: str) -> None:
    """Set Keras' global dtype policy: float32, mixed_bfloat16 (AMX CPUs) or mixed_float16 (GPUs)."""
    keras.mixed_precision.set_global_policy(policy)
