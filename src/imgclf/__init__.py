"""imgclf: reproducible image-classification experiments (DVC stages of tf.keras, tracked in MLflow)."""
