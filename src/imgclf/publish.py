"""What every model stage writes and logs after training: test metrics, plots, model file, MLflow."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import numpy as np

from imgclf import atomic, evaluation, model_file, paths, plots
from imgclf.fit import Fitted
from imgclf.params import flatten
from imgclf.tracking.runs import StageRun


def model_stage(
    stage: str,
    model: keras.Model,
    fitted: Fitted,
    test: evaluation.TestData,
    class_names: Sequence[str],
    tracked: StageRun,
    *,
    log_model: bool,
    extra_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate on the test split; write metrics, plots and the model; log them all to MLflow.

    `test`: a batched (images, labels) dataset or a pair of arrays; labels one-hot or integer.
    Returns the metrics written to metrics/<stage>.json (only what data and params determine).
    """
    labels, probabilities = evaluation.predict(model, test)
    metrics = evaluation.test_metrics(labels, probabilities, class_names)
    metrics |= {
        "epochs": len(fitted.history.get("loss", [])),
        "trainable_params": int(sum(np.prod(weight.shape) for weight in model.trainable_weights)),
        "total_params": int(model.count_params()),
    }
    metrics |= dict(extra_metrics or {})
    inference_model = model_file.without_optimizer(model)
    with atomic.directory(paths.model_dir(stage)) as folder:
        model_file.save(inference_model, folder / paths.model_file(stage).name)
    metrics["model_size_bytes"] = paths.model_file(stage).stat().st_size  # the file is byte-stable
    atomic.write_json(paths.metrics_file(stage), metrics)
    plots.write_plots(paths.plots_dir(stage), fitted.history, labels, probabilities.argmax(axis=1), class_names)

    tracked.log_history(fitted.history)
    final = {key: value for key, value in flatten(metrics).items() if isinstance(value, (int, float))}
    final["training_seconds"] = fitted.seconds  # run-specific: MLflow only, never the JSON
    tracked.log_metrics(final)
    tracked.log_artifact(paths.metrics_file(stage), "metrics")
    tracked.log_artifact(paths.plots_dir(stage), "plots")
    tracked.log_artifact(paths.tensorboard_dir(stage), "tensorboard")
    if log_model:
        # MLflow validates the input example with predict(): no progress bars from that in logs.
        keras.utils.disable_interactive_logging()
        try:
            tracked.log_keras_model(inference_model, evaluation.input_example(test))
        finally:
            keras.utils.enable_interactive_logging()
    print(
        f"{stage}: test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, "
        f"macro F1 {metrics['f1_macro']:.4f}",
        flush=True,
    )
    return metrics
