"""imgclf: reproducible image-classification experiments (DVC stages of tf.keras, tracked in MLflow)."""

__version__ = "0.1.0"
