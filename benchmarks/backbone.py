"""Backbone throughput and precision: bottleneck extraction vs a bare forward pass vs the machine's matmul.

In one process, one run:
  matmul:     tf.matmul of two 4096x4096 matrices in a tf.function, float32 and bfloat16: the
              machine's GEMM GFLOP/s (2 n^3 FLOPs each).
  forward:    a bare VGG16 (keras.applications, include_top=False, weights=None) forward pass,
              model(x, training=False) in a tf.function, batch 128 of in-memory tensors, under the
              float32 and mixed_bfloat16 Keras policies.
  extraction: the project's bottleneck stage recipe, stages/bottleneck.py, at
              the same size and precision, batch 128 (bottleneck.batch_size): images decoded from
              disk by the project's tf.data pipeline, through the extractor, streamed to .npz.
              Compared on the median batch: the interval between two forward calls (input
              pipeline, forward and writing: everything the stage does per batch), so that other
              work on the machine does not decide the ratio; the stage's own figures (whole pass,
              and "steady" after each split's first batch) are recorded beside it.
  at 150x150: generated dogs-vs-cats-like JPEGs (300-500 px, benchmarks/work/photos; 512 for
              float32, 768 for mixed_bfloat16)
The bare forward runs with TF's op determinism off; the stage function turns it on (seed_everything).
GFLOP/s = imgclf.models.backbones.forward_flops (2 x multiply-adds of every conv) x images / s.
oneDNN kernels: ONEDNN_VERBOSE timings of the 13 bf16 convolutions of one VGG16 150x150 pass.

Precision of the results: the project's bottleneck + top stage functions on mnist-sample (the
offline default, 32x32 input) with float32 and with mixed_bfloat16 features, top trained with
seeds 42 and 43 on each: the mean paired difference (target within 0.5 points), the float32
spread across seeds as the yardstick, and the linear SVM beside it.
Fine-tune step: the project's finetune model (imgclf.models.finetune.build: VGG16 with
block5 trainable + the top head), SGD, batch 32, train steps/s in float32 and mixed_bfloat16 at
150x150 (at 32x32 bf16 gained 1.25-1.5x in earlier runs).

    python benchmarks/backbone.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # first: it puts this checkout's src/ and root (its stages/) on sys.path

# isort: split
import keras
import numpy as np
import tensorflow as tf

import stages.bottleneck
import stages.svm
import stages.top
from imgclf.data import tfdata
from imgclf.models import backbones, finetune, heads
from imgclf.training import determinism
from imgclf.transfer import bottleneck, features

PRECISIONS = ("float32", "mixed_bfloat16")
BATCH = 128
TARGET_EXTRACTION_RATIO = 0.90  # extraction steady images/s >= 0.9 x bare forward
TARGET_BF16_GFLOPS_150 = 1500.0
TARGET_ACCURACY_POINTS = 0.5
SEEDS = (42, 43)  # top trained with each, on float32 and on bf16 features (paired)


def matmul_gflops(dtype: tf.DType, n: int = 4096, min_seconds: float = 3.0) -> float:
    """GEMM GFLOP/s of an n x n matmul in a tf.function (best of repeated timed calls)."""
    generator = tf.random.Generator.from_seed(0)
    a = tf.cast(generator.normal((n, n)), dtype)
    b = tf.cast(generator.normal((n, n)), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
    matmul(a, b).numpy()  # trace + warm up
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        started = time.perf_counter()
        matmul(a, b).numpy()
        elapsed = time.perf_counter() - started
        best, spent = min(best, elapsed), spent + elapsed
    return 2 * n**3 / best / 1e9


KERNEL_PROBE = """
import tensorflow as tf, keras
keras.mixed_precision.set_global_policy("mixed_bfloat16")
model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(150, 150, 3))
forward = tf.function(lambda x: model(x, training=False))
images = tf.random.stateless_uniform((128, 150, 150, 3), seed=(0, 0), maxval=255.0)
for _ in range(3):
    forward(images).numpy()
"""
VGG16_CONVS = 13


def onednn_kernels() -> dict:
    """Per-layer GFLOP/s of oneDNN's bf16 convolution kernels in one VGG16 150x150 batch of 128
    (ONEDNN_VERBOSE=1 in a child process, three forward passes, the last one read): what the
    convolutions themselves achieve here, next to the whole forward pass."""
    import re
    import subprocess

    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    output = subprocess.run([sys.executable, "-c", KERNEL_PROBE], env=env, capture_output=True, text=True).stdout
    convolutions = []
    for line in output.splitlines():
        parts = line.strip().split(",")
        if line.startswith("onednn_verbose") and len(parts) >= 8 and parts[3] == "exec" and parts[5] == "convolution":
            convolutions.append(parts)
    layers, total_ms, total_flops = [], 0.0, 0
    for parts in convolutions[-VGG16_CONVS:]:  # the last pass (the first ones include oneDNN's JIT)
        milliseconds = float(parts[-1])
        sizes = dict(re.findall(r"(mb|ic|oc|oh|ow|kh|kw)(\d+)", parts[-2]))
        flops = 2 * np.prod([int(sizes[key]) for key in ("mb", "ic", "oc", "oh", "ow", "kh", "kw")])
        layers.append({"layer": parts[-2].split("_")[1], "kernel": parts[6], "ms": milliseconds,
                       "gflops_per_s": round(float(flops) / milliseconds / 1e6, 1)})
        total_ms += milliseconds
        total_flops += int(flops)
    complete = len(convolutions) >= VGG16_CONVS
    return {"conv_layers": layers if complete else [],
            "conv_gflops_per_s": total_flops / total_ms / 1e6 if complete and total_ms else None,
            "conv_ms": total_ms, "passes_seen": len(convolutions) / VGG16_CONVS}


def op_determinism(enabled: bool) -> None:
    """Turn TF's op determinism on or off (imgclf.training.determinism.seed_everything turns it on)."""
    from tensorflow.python.framework import config

    (config.enable_op_determinism if enabled else config.disable_op_determinism)()


def bare_forward(side: int, precision: str, batches: int) -> dict:
    """images/s and GFLOP/s of VGG16 model(x, training=False) in a tf.function, batch 128."""
    keras.backend.clear_session()
    gc.collect()
    op_determinism(False)  # bare: no deterministic-kernel switch (the stage function sets it)
    determinism.set_precision(precision)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(side, side, 3))
    flops = backbones.forward_flops(model)
    images = tf.random.stateless_uniform((BATCH, side, side, 3), seed=(0, 0), maxval=255.0)
    forward = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32))
    forward(images).numpy()
    times = []
    for _ in range(batches):
        started = time.perf_counter()
        forward(images).numpy()
        times.append(time.perf_counter() - started)
    seconds = float(np.median(times))
    determinism.set_precision("float32")
    return {"images_per_s": BATCH / seconds, "gflops_per_s": BATCH * flops / seconds / 1e9,
            "gflop_per_image": flops / 1e9, "batch_seconds": [round(t, 4) for t in times]}


def project_extraction(workspace: Path, overrides: dict) -> dict:
    """The bottleneck stage's recipe in `workspace` (its data/split), without MLflow."""
    keras.backend.clear_session()
    gc.collect()
    params = common.write_params(workspace, overrides)
    splits: list[list[tuple[float, int]]] = []
    original = bottleneck.compiled_forward

    def stamped(model):
        # Timestamps each batch's forward call as it returns (CPU ops run synchronously): the
        # interval between two calls is one batch's full cost, input pipeline and writing included.
        # One call per split: intervals are taken within a split, never across two.
        forward = original(model)
        stamps: list[tuple[float, int]] = []
        splits.append(stamps)

        def call(images):
            result = forward(images)
            stamps.append((time.perf_counter(), int(images.shape[0])))
            return result

        return call

    bottleneck.compiled_forward = stamped
    tracked = common.NullRun()
    try:
        with common.inside(workspace):
            stages.bottleneck.run(params, tracked)
            shutil.rmtree("data/features", ignore_errors=True)
    finally:
        bottleneck.compiled_forward = original
    speed = {key.removeprefix("bottleneck_"): value for key, value in tracked.metrics.items()}
    rates = [size / (stamp - stamps[index - 1][0]) for stamps in splits
             for index, (stamp, size) in enumerate(stamps) if index and size == BATCH]
    speed["median_batch_images_per_s"] = float(np.median(rates)) if rates else float("nan")
    with common.inside(workspace):
        # The same input pipeline with no model: how fast decode + resize alone go.
        dataset, _, count = tfdata.load_ordered(params, "train", BATCH)
        started = time.perf_counter()
        for _ in dataset:
            pass
        speed["input_only_images_per_s"] = count / (time.perf_counter() - started)
    determinism.set_precision("float32")
    return speed


def linked_split(name: str, source: Path, per_class: dict[str, int]) -> Path:
    """A workspace whose data/split holds symlinks to the first images of `source` per split/class."""
    workspace = common.WORK / name
    root = workspace / "data" / "split"
    if not (root / ".complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        for split, count in per_class.items():
            for class_folder in sorted((source / split).iterdir()):
                target = root / split / class_folder.name
                target.mkdir(parents=True)
                for path in sorted(class_folder.iterdir())[:count]:
                    (target / path.name).symlink_to(path)
        (root / ".complete").write_text("ok\n")
    return workspace


def speed_rows(quick: bool) -> list[dict]:
    from input_pipeline import PHOTO_TEST, PHOTO_TRAIN

    photos = common.photo_split("photos", PHOTO_TRAIN, PHOTO_TEST)
    # Sized to a few seconds of steady state each (float32 at 150x150 runs at ~15 images/s):
    # train 3 (float32) or 5 batches of 128, test 1 or 1.
    workspaces = {
        (150, "float32"): linked_split("backbone_photos_512_ws", photos, {"train": 192, "test": 64}),
        (150, "mixed_bfloat16"): linked_split("backbone_photos_768_ws", photos, {"train": 320, "test": 64}),
    }
    rows = []
    for side, data in ((150, "dogs-vs-cats"),):
        for precision in PRECISIONS:
            workspace = workspaces[side, precision]
            bare = bare_forward(side, precision, batches=1 if quick or (side == 150 and precision == "float32") else 4)
            overrides = {"data.source": data, "image.size": [side, side], "backbone.name": "vgg16",
                         "backbone.weights": "none", "backbone.input_size": "auto",
                         "backbone.precision": precision, "bottleneck.batch_size": BATCH}
            load = common.load_now()
            project = project_extraction(workspace, overrides)
            median = project["median_batch_images_per_s"]
            project["median_batch_gflops_per_s"] = median * project["gflop_per_image"]
            ratio = common.ratio(median, bare["images_per_s"])
            row = {"side": side, "data": data, "precision": precision, "load_before": load,
                   "bare_forward": bare, "extraction": project, "extraction_over_bare": ratio,
                   "stage_steady_over_bare": common.ratio(project["steady_images_per_s"], bare["images_per_s"]),
                   "pass_within_10pct": bool(ratio >= TARGET_EXTRACTION_RATIO)}
            if side == 150 and precision == "mixed_bfloat16":
                row["pass_bf16_1500_gflops"] = bool(project["median_batch_gflops_per_s"] >= TARGET_BF16_GFLOPS_150)
            rows.append(row)
            print(f"  vgg16 {side}x{side} {precision:15} bare {bare['images_per_s']:6.1f} img/s "
                  f"{bare['gflops_per_s']:5.0f} GFLOP/s | extraction {median:6.1f} img/s "
                  f"{project['median_batch_gflops_per_s']:5.0f} GFLOP/s = {ratio:.2f} x bare (stage's own "
                  f"steady figure {project['steady_images_per_s']:.1f}, whole pass {project['images_per_s']:.1f}); "
                  f"input alone {project['input_only_images_per_s']:.0f} img/s; load {load[0]}", flush=True)
    return rows


def top_accuracy() -> dict:
    """The project's bottleneck + top stage functions on mnist-sample (32x32), float32 vs bf16 features.

    top is trained on each feature set with the same seeds (SEEDS: the same hold-out, shuffle,
    initial weights and dropout per seed): the per-seed differences are paired, and their mean is
    checked against TARGET_ACCURACY_POINTS; the spread of float32 accuracies across seeds is
    the yardstick of what a seed alone moves. The linear SVM (deterministic given the features)
    is reported beside it.
    """
    from input_pipeline import mnist_split

    mnist_root, _ = mnist_split()
    results: dict = {"seeds": list(SEEDS)}
    feature_sets = {}
    for precision in PRECISIONS:
        keras.backend.clear_session()
        gc.collect()
        workspace = common.WORK / f"top_{precision}_ws"
        split_link = workspace / "data" / "split"
        if not split_link.exists():
            split_link.parent.mkdir(parents=True, exist_ok=True)
            split_link.symlink_to(mnist_root, target_is_directory=True)
        params = common.write_params(workspace, {"backbone.precision": precision, "mlflow.log_model": False})
        row: dict = {"accuracy_by_seed": {}}
        with common.inside(workspace):
            tracked = common.NullRun()
            stages.bottleneck.run(params, tracked)
            speed = {key.removeprefix("bottleneck_"): value for key, value in tracked.metrics.items()}
            feature_sets[precision] = features.load("train").features
            for seed in SEEDS:
                keras.backend.clear_session()
                seeded = common.write_params(workspace, {"seed": seed, "backbone.precision": precision,
                                                         "mlflow.log_model": False})
                started = time.perf_counter()
                stages.top.run(seeded, common.NullRun())
                metrics = json.loads(Path("metrics/top.json").read_text())
                row["accuracy_by_seed"][str(seed)] = metrics["accuracy"]
                row.setdefault("top_seconds", []).append(round(time.perf_counter() - started, 1))
                stages.svm.run(seeded, common.NullRun())
                row.setdefault("svm_accuracy_by_seed", {})[str(seed)] = json.loads(Path("metrics/svm.json").read_text())["accuracy"]
        row["mean_accuracy"] = float(np.mean(list(row["accuracy_by_seed"].values())))
        row["svm_accuracy"] = float(np.mean(list(row["svm_accuracy_by_seed"].values())))  # LinearSVC is seeded too
        row["extraction_images_per_s"] = speed["images_per_s"]
        row["test_images"] = metrics["test_images"]
        results[precision] = row
        print(f"  top on {precision} features: {row['accuracy_by_seed']} (mean {row['mean_accuracy']:.4f}), "
              f"linear SVM {row['svm_accuracy_by_seed']} (mean {row['svm_accuracy']:.4f})", flush=True)
    f32, bf16 = feature_sets["float32"], feature_sets["mixed_bfloat16"]
    results["feature_relative_error"] = float(np.linalg.norm(bf16 - f32) / max(np.linalg.norm(f32), 1e-30))
    paired = [(results["mixed_bfloat16"]["accuracy_by_seed"][str(seed)]
               - results["float32"]["accuracy_by_seed"][str(seed)]) * 100 for seed in SEEDS]
    seed_spread = list(results["float32"]["accuracy_by_seed"].values())
    results["paired_difference_points"] = paired
    results["mean_difference_points"] = float(np.mean(paired))
    results["float32_seed_range_points"] = (max(seed_spread) - min(seed_spread)) * 100
    results["svm_difference_points"] = (results["mixed_bfloat16"]["svm_accuracy"] - results["float32"]["svm_accuracy"]) * 100  # means
    results["pass_within_half_point"] = bool(abs(results["mean_difference_points"]) <= TARGET_ACCURACY_POINTS)
    print(f"  bf16 - float32, paired by seed: {[round(value, 2) for value in paired]} points, mean "
          f"{results['mean_difference_points']:+.2f} (target within {TARGET_ACCURACY_POINTS}); float32 "
          f"across seeds: range {results['float32_seed_range_points']:.2f} points; SVM "
          f"{results['svm_difference_points']:+.2f}; features differ by {results['feature_relative_error']:.2e} relative",
          flush=True)
    return results


def finetune_steps(side: int, quick: bool) -> dict:
    """Train steps/s of the project's finetune model, float32 vs mixed_bfloat16, batch 32."""
    out = {}
    for precision in PRECISIONS:
        keras.backend.clear_session()
        gc.collect()
        params = common.write_params(common.WORK / "finetune_ws", {
            "data.source": "dogs-vs-cats", "image.size": [side, side], "backbone.precision": precision,
        })
        determinism.seed_everything(params.seed)
        determinism.set_precision("float32")  # top's head is saved in float32
        feature_side = side // 32
        head = heads.top((feature_side, feature_side, 512), 2, params.top.units, params.top.dropout)
        determinism.set_precision(precision)
        model, _ = finetune.build(params.backbone, params.seed, None, head, (side, side, 3), 2, params.finetune.trainable)
        model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        batch = params.finetune.batch_size
        images = tf.random.stateless_uniform((batch, side, side, 3), seed=(1, 0), maxval=255.0)
        labels = tf.one_hot(tf.range(batch) % 2, 2)
        dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
        steps = 2 if quick else (3 if side >= 150 else 6)
        timer = _EpochTimer()
        model.fit(dataset, epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0)
        out[precision] = {"steps_per_s": steps / timer.seconds[1], "images_per_s": steps * batch / timer.seconds[1],
                          "warmup_epoch_s": timer.seconds[0]}
        determinism.set_precision("float32")
    out["bf16_speedup"] = common.ratio(out["mixed_bfloat16"]["steps_per_s"], out["float32"]["steps_per_s"])
    out["batch_size"] = batch
    print(f"  finetune step {side}x{side}: float32 {out['float32']['images_per_s']:.1f} img/s, "
          f"mixed_bfloat16 {out['mixed_bfloat16']['images_per_s']:.1f} img/s: "
          f"{out['bf16_speedup']:.2f}x", flush=True)
    return out


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    args = parser.parse_args()
    load = common.load_now()
    started = time.perf_counter()
    sections = {}
    print("matmul 4096x4096:", flush=True)
    matmul = {"float32": matmul_gflops(tf.float32, min_seconds=1 if args.quick else 2),
              "bfloat16": matmul_gflops(tf.bfloat16, min_seconds=1 if args.quick else 2)}
    print(f"  float32 {matmul['float32']:.0f} GFLOP/s, bfloat16 {matmul['bfloat16']:.0f} GFLOP/s", flush=True)
    sections["matmul"] = time.perf_counter() - started
    figures = {"matmul_gflops_per_s": matmul, "batch_size": BATCH, "speed": speed_rows(args.quick)}
    sections["speed"] = time.perf_counter() - started - sum(sections.values())
    print("precision:", flush=True)
    figures["top_on_features"] = top_accuracy()
    sections["top_on_features"] = time.perf_counter() - started - sum(sections.values())
    figures["finetune_step"] = {"150": finetune_steps(150, args.quick)}
    sections["finetune_step"] = time.perf_counter() - started - sum(sections.values())
    figures["onednn_bf16_conv_kernels_150"] = kernels = onednn_kernels()
    sections["onednn_kernels"] = time.perf_counter() - started - sum(sections.values())
    if kernels["conv_gflops_per_s"]:
        rates = [layer["gflops_per_s"] for layer in kernels["conv_layers"]]
        print(f"  oneDNN bf16 conv kernels (VGG16 150x150, batch 128): {kernels['conv_gflops_per_s']:.0f} GFLOP/s "
              f"over all convs, {min(rates):.0f}-{max(rates):.0f} per layer ({kernels['conv_layers'][1]['kernel']})",
              flush=True)
    figures["section_seconds"] = sections
    figures["onednn"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    figures["wall_s"] = time.perf_counter() - started
    path = common.write_result("backbone", figures, load)
    print(f"written to {path.relative_to(common.ROOT)} (load before {load})")


if __name__ == "__main__":
    main()
