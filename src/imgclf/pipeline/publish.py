"""What every model stage writes and logs after training: test metrics, plots, model file, MLflow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from imgclf import atomic, paths
from imgclf.inference import classifier as classifier_module
from imgclf.inference import model_file
from imgclf.params import Params, flatten
from imgclf.pipeline import evaluation, mistakes, plots
from imgclf.tracking import logged_models
from imgclf.tracking.runs import StageRun
from imgclf.training.fitted import Fitted


def model_stage(
    stage: str,
    model: keras.Model,
    fitted: Fitted,
    test: evaluation.TestData,
    class_names: Sequence[str],
    tracked: StageRun,
    params: Params,
    *,
    image_model: keras.Model | None = None,
    internal_models: Mapping[Path, keras.Model] | None = None,
    files: Mapping[Path, bytes] | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
    label_heads: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Evaluate on the test split; write metrics, plots and the model; log them all to MLflow.

    `test`: a batched (images, labels) dataset or a pair of arrays; labels one-hot or integer.
    `image_model`: the classifier to save and log when `model` does not take images (top: its
    backbone and head composed); by default `model` itself. Either way the saved model takes
    uint8 images of the pipeline's size and brings its preprocessing. `internal_models`: more
    files for models/<stage>/ (top's features-only head, which finetune starts from); `files`: others,
    as bytes (the svm's scikit-learn model). `heads` ({column: class names}, several label columns, the
    first's being `class_names`): `model` has one softmax head per column; the metrics are per head and
    their mean, the saved and served model joins the heads into one output.
    Returns the metrics written to metrics/<stage>.json (only what data and params determine).
    """
    started = time.perf_counter()
    labels, probabilities = evaluation.predict(model, test)
    test_seconds = time.perf_counter() - started  # run-specific: MLflow only
    if label_heads:
        metrics = evaluation.heads_metrics(labels, probabilities, dict(label_heads))
    else:
        metrics = evaluation.test_metrics(labels, probabilities, class_names)
    deployable = model_file.without_optimizer(image_model or (_joined(model) if label_heads else model))
    metrics |= {
        "epochs": len(fitted.history.get("loss", [])),
        "trainable_params": int(sum(np.prod(weight.shape) for weight in model.trainable_weights)),
        "total_params": int(deployable.count_params()),
    }
    metrics |= dict(extra_metrics or {})
    classifier = classifier_module.Classifier(deployable, class_names, params.data.max_image_pixels, label_heads)
    with atomic.directory(paths.model_dir(stage)) as folder:
        model_file.save(deployable, folder / paths.model_file(stage).name)
        classifier_module.write_info(folder / paths.classifier_info(stage).name, class_names, classifier.spec, label_heads)
        for path, internal in (internal_models or {}).items():
            model_file.save(model_file.without_optimizer(internal), folder / Path(path).name)
        for path, data in (files or {}).items():
            (folder / Path(path).name).write_bytes(data)
    metrics["model_size_bytes"] = paths.model_file(stage).stat().st_size  # the file is byte-stable
    atomic.write_json(paths.metrics_file(stage), metrics)
    if label_heads:  # one confusion matrix for every head: <column>=<class> rows and columns, a block per head
        offsets = np.cumsum([0, *(len(names) for names in label_heads.values())])
        actual = np.concatenate([labels[column] + offset for column, offset in zip(label_heads, offsets, strict=False)])
        predicted = np.concatenate([probabilities[column].argmax(axis=1) + offset
                                    for column, offset in zip(label_heads, offsets, strict=False)])
        names = [f"{column}={name}" for column, column_names in label_heads.items() for name in column_names]
        plots.write_plots(paths.plots_dir(stage), fitted.history, actual, predicted, names)
    else:
        plots.write_plots(paths.plots_dir(stage), fitted.history, labels, probabilities.argmax(axis=1), class_names)
    first = next(iter(label_heads)) if label_heads else None  # the gallery shows the first head, the class folders
    shown = mistakes.write(stage, deployable, classifier.spec, labels[first] if first else labels,
                           probabilities[first] if first else probabilities, class_names, params.mistakes.per_class)

    tracked.log_history(fitted.history)
    final = {key: value for key, value in flatten(metrics).items() if isinstance(value, (int, float))}
    # Run-specific: MLflow only, never the JSON.
    final |= fitted.speed() | {"test_seconds": test_seconds}
    final |= classifier_module.measure(classifier, params.seed)
    tracked.log_metrics(final)
    tracked.log_artifact(paths.metrics_file(stage), "metrics")
    tracked.log_artifact(paths.plots_dir(stage), "plots")
    for path in shown:
        tracked.log_image(path)
    tracked.log_artifact(paths.tensorboard_dir(stage), "tensorboard")
    if params.mlflow.log_model:
        example = _example_images(test, deployable, image_model is not None)
        metadata = classifier_module.info(class_names, classifier.spec, label_heads) | {"stage": stage}
        # MLflow validates the input examples with predict(): no progress bars from that in logs.
        keras.utils.disable_interactive_logging()
        try:
            logged_models.log_keras_model(tracked, deployable, example, metadata)
            logged_models.log_classifier(tracked, paths.model_file(stage), paths.classifier_info(stage), list(class_names),
                                  example[0], metadata, label_heads)
        finally:
            keras.utils.enable_interactive_logging()
    print(
        f"{stage}: test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, "
        f"macro F1 {metrics['f1_macro']:.4f}; {final['latency_ms_batch1']:.1f} ms per image at batch 1, "
        f"{final['images_per_s_batch32']:.0f} images/s at batch 32",
        flush=True,
    )
    return metrics


def _example_images(test: evaluation.TestData, model: keras.Model, features_only: bool) -> np.ndarray:
    """A few uint8 images for the logged models' examples: test images, or (top, whose test data are
    features) a generated batch of the model's input shape."""
    if not features_only:
        return evaluation.input_example(test).astype(np.uint8)
    shape = model.input_shape[1:]
    return np.random.default_rng(0).integers(0, 256, size=(evaluation.INPUT_EXAMPLE_SIZE, *shape), dtype=np.uint8)


def _joined(model: keras.Model) -> keras.Model:
    """A model with one softmax head per label column (its outputs a dict by column) as a model with one
    output: the heads' probabilities side by side, in the dict's order (a Concatenate layer `class`). What is
    saved, predicted with and served; classifier.json says which columns are whose."""
    outputs = list(model.output.values())
    return keras.Model(model.input, keras.layers.Concatenate(dtype="float32", name="class")(outputs), name=model.name)
