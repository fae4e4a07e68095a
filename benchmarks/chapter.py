"""The chapter's workload, stage by stage, against each stage's compute-bound ideal.

Kaggle's `train.zip` layout with 2,800 generated 300-500 px photo-like JPEGs; the pipeline as users
run the chapter (`data.source: dogs-vs-cats`, 1,000 train + 400 test images per class at 150x150,
every other param as committed) in a fresh clone, `dvc repro`, once with `cnn.precision` and
`backbone.precision` float32 and once mixed_bfloat16 (skipped on a CPU without bf16 instructions,
where bf16 is emulated). For every stage:

- wall: from DVC's "Running stage" line to the next (process start, imports, the run, DVC's saving);
- run: the stage's MLflow run, start to end;
- work: the training loop (MLflow's `training_seconds`) or, for bottleneck, the extraction pass;
- ideal: the same number of train steps (bottleneck: forward passes; and the evaluation passes the
  stage makes: Keras stages' validation, perceptron's and convnet's validation and convnet's test-set
  summaries) of the same model, same batch size and precision, on tensors already in memory:
  the first step (tracing) timed alone, then `--probe-steps` steps timed and scaled to the stage's count;
- test: the model's pass over the test split (MLflow's `test_seconds`);
- ratio = ideal / work (1: the stage trains at the machine's limit); fixed = wall - work - test: what
  a stage costs besides its work (process start, imports, MLflow, loading, saving, publishing, DVC).

    python benchmarks/chapter.py [--precisions float32,mixed_bfloat16] [--probe-steps 12] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

IMAGES = 2800
SIDES = (300, 500)
WORKLOAD = {"data.source": "dogs-vs-cats", "data.train_per_class": 1000, "data.test_per_class": 400}
MODEL_STAGES = ("perceptron", "convnet", "baseline", "augmented", "top", "finetune")  # stages with a training loop
# The whole workload: at most this share of it before, on the same machine (the "before": 427 s on
# a 2-core EPYC; run_all.py knows the first run on other machines); whole_max_s is that share of 427 s.
WHOLE_SHARE_MAX = 0.75
TARGETS = {"train_ratio_min": 0.8, "bottleneck_ratio_min": 0.9, "augmented_over_baseline_max": 1.15,
           "fixed_cost_max_s": 3.0, "whole_share_max": WHOLE_SHARE_MAX, "whole_max_s": WHOLE_SHARE_MAX * 427}


def bf16_instructions() -> bool:
    flags = set(common.machine_info().get("cpu_flags", []))
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def archive() -> Path:
    """benchmarks/work/archives/chapter-2800.zip: Kaggle's layout, photo-sized JPEGs (made once)."""
    target = common.WORK / "archives" / f"chapter-{IMAGES}.zip"
    if not target.is_file():
        made = common.kaggle_zip(IMAGES, SIDES)
        made.rename(target)
    return target


def stage_runs(clone: Path) -> dict[str, dict]:
    """{stage: {run_s, metrics}} of the clone's MLflow store (its one pipeline)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    found = {}
    for run in client.search_runs(experiments, "tags.`dvc.stage` != ''", max_results=100):
        found[run.data.tags["dvc.stage"]] = {"run_s": (run.info.end_time - run.info.start_time) / 1000,
                                            "metrics": dict(run.data.metrics)}
    return found


def work_seconds(stage: str, metrics: dict) -> float | None:
    if stage == "bottleneck":
        return metrics.get("bottleneck_seconds")
    return metrics.get("training_seconds")


def pipeline(precision: str, zip_path: Path, probe_steps: int, keep: bool) -> dict:
    clone = common.clone_project(f"chapter-{precision}-")
    try:
        common.apply_overrides(clone / "params.yaml", WORKLOAD | {
            "data.archive": str(zip_path), "cnn.precision": precision, "backbone.precision": precision})
        env = common.stage_env(clone, clone)
        print(f"[{precision}] dvc repro of the chapter workload in {clone} ...", flush=True)
        repro = common.dvc_repro(clone, env)
        runs = stage_runs(clone)
        print(f"[{precision}] ideals ({probe_steps} probe steps per stage) ...", flush=True)
        probe = subprocess.run([sys.executable, __file__, "--ideals", "--probe-steps", str(probe_steps)], cwd=clone,
                               env=env, capture_output=True, text=True)
        if probe.returncode != 0:
            raise RuntimeError(f"ideals failed:\n{probe.stderr[-3000:]}")
        ideals = json.loads(probe.stdout.strip().splitlines()[-1])
    finally:
        if not keep:
            shutil.rmtree(clone.parent, ignore_errors=True)
    stages = {}
    for stage, wall in repro["stage_seconds"].items():
        run = runs.get(stage, {})
        work = work_seconds(stage, run.get("metrics", {}))
        test = run.get("metrics", {}).get("test_seconds")
        ideal = ideals.get(stage)
        stages[stage] = {
            "wall_s": round(wall, 1), "run_s": round(run.get("run_s", float("nan")), 1),
            "work_s": None if work is None else round(work, 1),
            "test_s": None if test is None else round(test, 1),
            "ideal_s": None if ideal is None else round(ideal, 1),
            "ratio": None if not (work and ideal) else round(ideal / work, 2),
            "fixed_s": round(wall - (work or 0.0) - (test or 0.0), 1),
        }
        print(f"  {stage:11} wall {wall:6.1f} s, run {stages[stage]['run_s']:6.1f} s, work {work or 0:6.1f} s, "
              f"test {test or 0:5.1f} s, ideal {ideal or 0:6.1f} s, ratio {stages[stage]['ratio']}, "
              f"fixed {stages[stage]['fixed_s']} s", flush=True)
    return {"seconds": round(repro["seconds"], 1), "stages": stages}


# --- the ideals, measured inside the clone after its repro ------------------------------------------


def timed_steps(step, total: int, probe: int) -> float:
    """Seconds for `total` calls of step(): the first alone (tracing), then `probe` timed, scaled."""
    started = time.perf_counter()
    step()
    first = time.perf_counter() - started
    count = max(1, min(probe, total - 1))
    started = time.perf_counter()
    for _ in range(count):
        step()
    per_step = (time.perf_counter() - started) / count
    return first + per_step * (total - 1)


def ideals(probe: int) -> dict[str, float]:
    import keras
    import numpy as np
    import tensorflow as tf

    from imgclf import params as params_module
    from imgclf import paths
    from imgclf.data import holdout, tfdata
    from imgclf.inference import model_file
    from imgclf.models import architectures, backbones, convnet, finetune, heads, perceptron
    from imgclf.training import determinism
    from imgclf.transfer import features

    params = params_module.load()
    counts = tfdata.check_layout()
    classes = len(counts["train"])
    train_images = sum(counts["train"].values())
    fit_images = train_images - holdout.held_out(train_images, params.data.validation_fraction)
    validation_images = train_images - fit_images
    shape = tfdata.image_shape(params)
    rng = np.random.default_rng(0)

    def batch_of(size: int, item_shape: tuple, dtype: str = "uint8"):
        values = rng.integers(0, 256, size=(size, *item_shape)) if dtype == "uint8" else rng.random((size, *item_shape))
        labels = np.eye(classes, dtype="float32")[np.arange(size) % classes]
        return tf.constant(values.astype(dtype)), tf.constant(labels)

    def keras_fit(model: keras.Model, settings, item_shape: tuple, dtype: str = "uint8", optimizer=None) -> float:
        images, labels = batch_of(settings.batch_size, item_shape, dtype)
        model.compile(optimizer=optimizer or keras.optimizers.Adam(settings.learning_rate),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        steps = settings.epochs * math.ceil(fit_images / settings.batch_size)
        validation_steps = settings.epochs * math.ceil(validation_images / settings.batch_size)
        train = timed_steps(lambda: model.train_on_batch(images, labels), steps, probe)
        evaluate = timed_steps(lambda: model.test_on_batch(images, labels), validation_steps, probe) \
            if validation_steps else 0.0
        return train + evaluate

    test_images = sum(counts["test"].values())

    def low_level(model, settings, test_every: int = 0) -> float:
        """Its train steps, plus the evaluation passes lowlevel.train makes: the validation split at each
        epoch's end and, every `test_every` steps, the whole test split."""
        images, labels = batch_of(settings.batch_size, shape)
        train = timed_steps(lambda: model.train_step(images, labels), settings.steps, probe)
        epochs = math.ceil(settings.steps / math.ceil(fit_images / settings.batch_size))
        passes = epochs * math.ceil(validation_images / settings.batch_size)
        if test_every:
            passes += settings.steps // test_every * math.ceil(test_images / settings.batch_size)
        return train + (timed_steps(lambda: model.batch_metrics(images, labels), passes, probe) if passes else 0.0)

    found: dict[str, float] = {}
    determinism.seed_everything(params.seed)
    found["perceptron"] = low_level(perceptron.SoftmaxRegression(
        math.prod(shape), classes, params.perceptron.init_stddev, params.perceptron.learning_rate, params.seed),
        params.perceptron)
    found["convnet"] = low_level(convnet.ConvNet(shape, classes, params.convnet, params.seed), params.convnet,
                                 params.convnet.test_summary_steps)
    for stage in ("baseline", "augmented"):
        keras.backend.clear_session()
        determinism.set_precision(params.cnn.precision)
        found[stage] = keras_fit(architectures.build(shape, classes, params.cnn), getattr(params, stage), shape)
    keras.backend.clear_session()
    determinism.set_precision(params.backbone.precision)
    extractor = backbones.build_extractor(params.backbone, params.seed, None, shape)
    forward = tf.function(lambda batch: extractor(batch, training=False))
    images, _ = batch_of(params.bottleneck.batch_size, shape)
    passes = sum(math.ceil(count / params.bottleneck.batch_size) for count in
                 (sum(counts[split].values()) for split in paths.SPLITS))
    found["bottleneck"] = timed_steps(lambda: forward(images), passes, probe)
    keras.backend.clear_session()
    determinism.set_precision("float32")
    feature_shape = features.load_arrays(params.data.validation_fraction, params.seed).feature_shape
    head = heads.top(feature_shape, classes, params.top.units, params.top.dropout)
    found["top"] = keras_fit(head, params.top, feature_shape, "float32")
    keras.backend.clear_session()
    determinism.set_precision(params.backbone.precision)
    trained_head = model_file.load(paths.top_head_file(), "run top")
    model, _ = finetune.build(params.backbone, params.seed, None, trained_head, shape, classes, params.finetune.trainable)
    optimizer = keras.optimizers.SGD(learning_rate=params.finetune.learning_rate, momentum=params.finetune.momentum)
    found["finetune"] = keras_fit(model, params.finetune, shape, optimizer=optimizer)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--probe-steps", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the clones in benchmarks/work")
    parser.add_argument("--ideals", action="store_true", help=argparse.SUPPRESS)  # inside a clone, after its repro
    args = parser.parse_args()
    if args.ideals:
        print(json.dumps(ideals(args.probe_steps)))
        return
    load = common.load_now()
    zip_path = archive()
    results: dict = {"images": IMAGES, "sides": list(SIDES), "workload": WORKLOAD, "targets": TARGETS, "runs": {}}
    for precision in args.precisions.split(","):
        if precision != "float32" and not bf16_instructions():
            results["runs"][precision] = {"skipped": "no bf16 instructions (AMX or AVX-512 BF16): bf16 is emulated"}
            continue
        results["runs"][precision] = pipeline(precision, zip_path, args.probe_steps, args.keep)
    path = common.write_result("chapter", results, load)
    print(f"written to {path.relative_to(common.ROOT)} (load before {load})")


if __name__ == "__main__":
    main()
