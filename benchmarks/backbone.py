"""Backbone throughput and precision: bottleneck extraction vs a bare forward pass vs the machine's matmul.

In one process, one run:
  matmul:     tf.matmul of two 4096x4096 matrices in a tf.function, float32 and bfloat16: the
              machine's GEMM GFLOP/s (2 n^3 FLOPs each).
  forward:    a bare VGG16 (keras.applications, include_top=False, weights=None) forward pass,
              model(x, training=False) in a tf.function, batch 128 of in-memory tensors, under the
              float32 and mixed_bfloat16 Keras policies.
  extraction: the project's bottleneck stage function, imgclf.extraction.write_bottleneck, at
              the same size and precision, batch 128 (bottleneck.batch_size): images decoded from
              disk by the project's tf.data pipeline, through the extractor, streamed to .npz.
              Compared on the median batch: the interval between two forward calls (input
              pipeline, forward and writing: everything the stage does per batch), so that other
              work on the machine does not decide the ratio; the stage's own figures (whole pass,
              and "steady" after each split's first batch) are recorded beside it.
  at 150x150: generated dogs-vs-cats-like JPEGs (300-500 px, benchmarks/work/photos; 512 for
              float32, 768 for mixed_bfloat16)
  at 48x48:   the offline default's digits (mnist-sample PNGs; 1,280 for float32, 2,560 for
              mixed_bfloat16) resized to 48x48.
The bare forward runs with TF's op determinism off; the stage function turns it on (seed_everything).
GFLOP/s = imgclf.models.backbones.forward_flops (2 x multiply-adds of every conv) x images / s.

Precision of the results: the project's bottleneck + top stage functions on mnist-sample (the
offline default, 32x32 input) with float32 and with mixed_bfloat16 features: top test accuracy,
and, as the yardstick, top's accuracy on the same float32 features with another seed.
Fine-tune step: the project's finetune model (imgclf.finetuning.build_finetune_model: VGG16 with
block5 trainable + the top head), SGD, batch 32, train steps/s in float32 and mixed_bfloat16.

    python benchmarks/backbone.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from imgclf import determinism, extraction, features, transfer  # noqa: E402
from imgclf.data import pipeline  # noqa: E402
from imgclf.models import backbones  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")
BATCH = 128
TARGET_EXTRACTION_RATIO = 0.90  # extraction steady images/s >= 0.9 x bare forward
TARGET_BF16_GFLOPS_150 = 1500.0
TARGET_ACCURACY_POINTS = 0.5
SPREAD_SEEDS = (43,)  # top retrained on the same float32 features with another seed


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
forward(images).numpy()
print("MEASURED", flush=True)
forward(images).numpy()
"""


def onednn_kernels() -> dict:
    """Per-layer GFLOP/s of oneDNN's bf16 convolution kernels in one VGG16 150x150 batch of 128
    (ONEDNN_VERBOSE=1 in a child process): what the convolutions themselves achieve here."""
    import re
    import subprocess

    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    output = subprocess.run([sys.executable, "-c", KERNEL_PROBE], env=env, capture_output=True, text=True).stdout
    measured = output.split("MEASURED", 1)[-1]
    layers, total_ms, other_ms, total_flops = [], 0.0, 0.0, 0
    for line in measured.splitlines():
        parts = line.strip().split(",")
        if not line.startswith("onednn_verbose") or len(parts) < 8 or parts[3] != "exec":
            continue
        milliseconds = float(parts[-1])
        if parts[5] != "convolution":
            other_ms += milliseconds
            continue
        sizes = dict(re.findall(r"(mb|ic|oc|oh|ow|kh|kw)(\d+)", parts[-2]))
        flops = 2 * np.prod([int(sizes[key]) for key in ("mb", "ic", "oc", "oh", "ow", "kh", "kw")])
        layers.append({"layer": parts[-2].split("_")[1], "kernel": parts[6],
                       "gflops_per_s": round(float(flops) / milliseconds / 1e6, 1)})
        total_ms += milliseconds
        total_flops += int(flops)
    return {"conv_layers": layers, "conv_gflops_per_s": total_flops / total_ms / 1e6 if total_ms else None,
            "conv_ms": total_ms, "other_onednn_ms": other_ms}


def op_determinism(enabled: bool) -> None:
    """Turn TF's op determinism on or off (imgclf.determinism.seed_everything turns it on)."""
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
    """imgclf.extraction.write_bottleneck in `workspace` (its data/split), as the stage runs it."""
    keras.backend.clear_session()
    gc.collect()
    params = common.write_params(workspace, overrides)
    splits: list[list[tuple[float, int]]] = []
    original = features.compiled_forward

    def stamped(model):
        # Timestamps each batch's forward call as it returns (CPU ops run synchronously): the
        # interval between two calls is one batch's full cost, input pipeline and writing included.
        forward = original(model)
        stamps: list[tuple[float, int]] = []
        splits.append(stamps)

        def call(images):
            result = forward(images)
            stamps.append((time.perf_counter(), int(images.shape[0])))
            return result

        return call

    features.compiled_forward = stamped
    try:
        with common.inside(workspace):
            target = Path("features-bench")
            shutil.rmtree(target, ignore_errors=True)
            speed = extraction.write_bottleneck(params, target)
            shutil.rmtree(target, ignore_errors=True)
    finally:
        features.compiled_forward = original
    rates = [size / (stamp - stamps[index - 1][0]) for stamps in splits
             for index, (stamp, size) in enumerate(stamps) if index and size == BATCH]
    speed["median_batch_images_per_s"] = float(np.median(rates)) if rates else float("nan")
    with common.inside(workspace):
        # The same input pipeline with no model: how fast decode + resize alone go.
        dataset, _, count = pipeline.load_ordered(params, "train", BATCH, rescale=False)
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
    from input_pipeline import PHOTO_TEST, PHOTO_TRAIN, mnist_split

    photos = common.photo_split("photos", PHOTO_TRAIN, PHOTO_TEST)
    mnist_root, _ = mnist_split()
    # Sized to a few seconds of steady state each (float32 at 150x150 runs at ~15 images/s):
    # train 3 (float32) or 5 batches of 128, test 1 or 1.
    workspaces = {
        (150, "float32"): linked_split("backbone_photos_512_ws", photos, {"train": 192, "test": 64}),
        (150, "mixed_bfloat16"): linked_split("backbone_photos_768_ws", photos, {"train": 320, "test": 64}),
        (48, "float32"): linked_split("backbone_mnist_1280_ws", mnist_root, {"train": 100, "test": 28}),
        (48, "mixed_bfloat16"): linked_split("backbone_mnist_2560_ws", mnist_root, {"train": 200, "test": 56}),
    }
    rows = []
    for side, data in ((150, "dogs-vs-cats"), (48, "mnist-sample")):
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
    """The project's bottleneck + top stage functions on mnist-sample (32x32), float32 vs bf16 features."""
    from input_pipeline import mnist_split

    mnist_root, _ = mnist_split()
    results = {}
    for precision in PRECISIONS:
        keras.backend.clear_session()
        gc.collect()
        workspace = common.WORK / f"top_{precision}_ws"
        split_link = workspace / "data" / "split"
        if not split_link.exists():
            split_link.parent.mkdir(parents=True, exist_ok=True)
            split_link.symlink_to(mnist_root, target_is_directory=True)
        params = common.write_params(workspace, {"backbone.precision": precision, "mlflow.log_model": False})
        with common.inside(workspace):
            speed = extraction.write_bottleneck(params)
            started = time.perf_counter()
            metrics = transfer.train_top(params, common.NullRun())
            top_seconds = time.perf_counter() - started
            train_features = features.load(Path("data/features/train.npz")).features
        results[precision] = {
            "accuracy": metrics["accuracy"], "svm_accuracy": metrics["svm_accuracy"],
            "loss": metrics["loss"], "test_images": metrics["test_images"], "top_epochs": metrics["epochs"],
            "extraction_images_per_s": speed["images_per_s"], "top_seconds": top_seconds,
            "feature_mean_abs": float(np.mean(np.abs(train_features))),
        }
        results[f"_{precision}_features"] = train_features
    # How much top's accuracy moves with its own seed alone (hold-out, shuffle, init, dropout) on
    # the same float32 features: the yardstick for the float32 vs bf16 difference.
    seed_accuracies = {}
    for seed in SPREAD_SEEDS:
        keras.backend.clear_session()
        workspace = common.WORK / "top_float32_ws"
        params = common.write_params(workspace, {"seed": seed, "mlflow.log_model": False})
        with common.inside(workspace):
            seed_accuracies[seed] = transfer.train_top(params, common.NullRun())["accuracy"]
    accuracies = [results["float32"]["accuracy"], *seed_accuracies.values()]
    results["float32_seed_accuracies"] = {"42": results["float32"]["accuracy"], **{str(k): v for k, v in seed_accuracies.items()}}
    results["float32_seed_range_points"] = (max(accuracies) - min(accuracies)) * 100
    f32, bf16 = results.pop("_float32_features"), results.pop("_mixed_bfloat16_features")
    results["feature_relative_error"] = float(np.linalg.norm(bf16 - f32) / max(np.linalg.norm(f32), 1e-30))
    difference = abs(results["mixed_bfloat16"]["accuracy"] - results["float32"]["accuracy"]) * 100
    results["accuracy_difference_points"] = difference
    results["pass_within_half_point"] = bool(difference <= TARGET_ACCURACY_POINTS)
    print(f"  top accuracy: float32 {results['float32']['accuracy']:.4f}, mixed_bfloat16 "
          f"{results['mixed_bfloat16']['accuracy']:.4f} ({difference:.2f} points; features differ by "
          f"{results['feature_relative_error']:.2e} relative); float32 features, seeds 42/"
          f"{'/'.join(map(str, SPREAD_SEEDS))}: {results['float32_seed_accuracies']} "
          f"(range {results['float32_seed_range_points']:.2f} points)", flush=True)
    return results


def finetune_steps(side: int, quick: bool) -> dict:
    """Train steps/s of the project's finetune model, float32 vs mixed_bfloat16, batch 32."""
    from imgclf import finetuning
    from imgclf.models.top import build_top

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
        head = build_top((feature_side, feature_side, 512), 2, params.top.units, params.top.dropout)
        determinism.set_precision(precision)
        model, _ = finetuning.build_finetune_model(params, head, (side, side, 3), 2, None)
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
    figures["finetune_step"] = {str(side): finetune_steps(side, args.quick) for side in (150, 32)}
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
