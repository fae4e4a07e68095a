"""Training throughput by input feed: the project's tf.data pipeline vs ImageDataGenerator vs memory.

Photo workload: a generated dogs-vs-cats-like folder (500 + 100 JPEGs of 300-500 px per class,
made once in benchmarks/work/photos/), decoded and resized to 150x150, the Keras blog's small
convnet (3 x (Conv 32/32/64 + MaxPool), Flatten, Dense 64, Dropout .5, Dense 2 softmax), batch 32,
Adam. The same 1,000 training images, model, seed and batch size, fed by:
  (a) pipeline: imgclf.data.tfdata.load_split (+ imgclf.training.augmentation.augment_dataset), as the
      training stages call them;
  (b) idg:      tf.keras.preprocessing.image.ImageDataGenerator(...).flow_from_directory, the
      chapter's way (Keras 3 still ships it, as keras.src.legacy.preprocessing.image);
  (c) memory:   the decoded images as in-memory tensors (tf.data from_tensor_slices, batched):
      no input work at all, so the compute-bound limit. It has no augmentation: measured once,
      it is the limit of both rows.
(a) and (c) reach fit() as the training stages' datasets do (imgclf.training.fit.endless: one
endless iterator, steps = one pass); (b) is a Keras PyDataset, fed as the chapter feeds it.
Augmentation off and on (horizontal flip, zoom 0.3, shear 0.3; ImageDataGenerator's shear_range is
in degrees, so it gets atan(0.3) = 16.7 degrees, the same shear). Side by side: each feed is fitted
`--rounds` times, the order reversed every other round (a b c, c b a), each fit one warm-up epoch
(tracing, and for (a) the decode + cache fill) then `--epochs` measured ones; the rows with room
to spare (augmentation on, MNIST) fit each feed once for rounds x epochs measured epochs. Two figures per feed:
images / seconds of all its measured epochs (what the targets are checked on: see RATE), and batch
size / median batch interval.

MNIST workload: the offline default's data (mnist-sample digits, 28x28 grayscale; 2,000 of them
an epoch, split by the project's own download + split functions), the chapter's CNN
(imgclf.models.simple_cnn, layout chapter) with the baseline stage's batch size and cnn.precision from
params.yaml, the same three feeds, no augmentation.

    python benchmarks/input_pipeline.py [--epochs 1] [--rounds 2] [--skip-mnist]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import keras
import numpy as np
import tensorflow as tf

from imgclf.data import tfdata
from imgclf.training import augmentation, determinism, fit

import common

PHOTO_TRAIN, PHOTO_TEST = 500, 100  # per class: 1,200 JPEGs
PHOTO_SIZE = (150, 150)
PHOTO_BATCH = 32
MNIST_TRAIN = 200  # per class: 2,000 digits an epoch, 16 batches of 128 (images/s does not depend on the count)
# horizontal_flip: auto = on for a photo source (dogs-vs-cats), as the augmented stage resolves it.
AUGMENT = {"augmentation.horizontal_flip": "auto", "augmentation.zoom": 0.3, "augmentation.shear": 0.3,
           "augmentation.rotation": 0.0, "augmentation.translation": 0.0}
# The rate the targets are checked on: images / seconds of the measured epochs, stalls included
# (the median batch interval, kept beside it, hides stalls between epochs: the very thing that
# made the pipeline slow before fit.endless()). On a busy machine both move; run it quiet.
RATE = "images_per_s"
TARGETS = {  # (feed a / feed c, feed a / feed b) at least
    "off": (0.95, 2.0),
    "on": (0.8, 2.5),
}


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch, and every batch's interval (from the previous batch's end) per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.batches: list[list[float]] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.started = self.last = time.perf_counter()
        self.batches.append([])

    def on_train_batch_end(self, batch, logs=None) -> None:
        now = time.perf_counter()
        self.batches[-1].append(now - self.last)
        self.last = now

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def blog_convnet(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """The Keras blog's small cats-vs-dogs convnet, with a 2-way softmax."""
    from keras import layers

    model = keras.Sequential([keras.Input(shape=input_shape)])
    for filters in (32, 32, 64):
        model.add(layers.Conv2D(filters, 3, activation="relu"))
        model.add(layers.MaxPooling2D(2))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


def fit_once(build, feed, steps_per_epoch: int | None, epochs: int, seed: int, precision: str) -> EpochTimer:
    """Fit a fresh model for 1 warm-up + `epochs` epochs; the timer of every epoch and batch."""
    keras.backend.clear_session()
    gc.collect()
    determinism.seed_everything(seed)
    determinism.set_precision(precision)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    data = feed()
    if isinstance(data, tf.data.Dataset) and steps_per_epoch is None:
        # As imgclf.training.fit.fit feeds every stage: one endless iterator, epochs of one pass (see endless()).
        data, steps_per_epoch = fit.endless(data)
    model.fit(data, epochs=1 + epochs, steps_per_epoch=steps_per_epoch, callbacks=[timer], verbose=0)
    determinism.set_precision("float32")
    return timer


def side_by_side(feeds: list[tuple[str, object, int | None]], build, images_per_epoch: int, epochs: int,
                 rounds: int, seed: int, precision: str = "float32") -> dict:
    """Each feed fitted `rounds` times, in order then reversed (a b c, c b a, ...), so a slow minute
    of the machine (it drifts by 10-20 % within minutes) does not land on one feed only.

    Per feed: images/s over all its measured epochs (the warm-up epoch of each fit left out: tracing,
    and for the pipeline the decode + cache fill), the median full-batch interval, every epoch's seconds.
    """
    timers: dict[str, list[EpochTimer]] = {name: [] for name, _, _ in feeds}
    for round_index in range(rounds):
        for name, feed, steps in (feeds if round_index % 2 == 0 else feeds[::-1]):
            timer = fit_once(build, feed, steps, epochs, seed, precision)
            timers[name].append(timer)
            print(f"  {name:11} {images_per_epoch * epochs / sum(timer.seconds[1:]):7.1f} images/s "
                  f"(epochs {[round(value, 2) for value in timer.seconds]}; load {common.load_now()[0]})", flush=True)
    row = {}
    for name, fits in timers.items():
        measured = [seconds for timer in fits for seconds in timer.seconds[1:]]
        batch_size = math.ceil(images_per_epoch / len(fits[0].batches[0]))
        # Full batches of the measured epochs (the last, partial one left out).
        intervals = [interval for timer in fits for epoch in timer.batches[1:] for interval in epoch[:-1]]
        row[name] = {
            "images_per_s": images_per_epoch * len(measured) / sum(measured),
            "median_batch_images_per_s": batch_size / float(np.median(intervals)),
            "epoch_seconds": [[round(value, 3) for value in timer.seconds] for timer in fits],
        }
    return row


def with_ratios(row: dict, targets: tuple[float, float]) -> dict:
    """a/c and a/b on the epoch rates (the targets), and on the median-batch rates (beside them)."""
    feeds = ("a_pipeline", "b_idg", "c_memory")
    a, b, c = (row[key][RATE] for key in feeds)
    median_a, median_b, median_c = (row[key]["median_batch_images_per_s"] for key in feeds)
    want_c, want_b = targets
    row |= {
        "a_over_c": common.ratio(a, c), "a_over_b": common.ratio(a, b),
        # No feed outruns the compute-bound limit, so a/b cannot exceed c/b on this machine.
        "c_over_b": common.ratio(c, b),
        "a_over_c_median": common.ratio(median_a, median_c), "a_over_b_median": common.ratio(median_a, median_b),
        "targets": {"a_over_c_min": want_c, "a_over_b_min": want_b, "on": RATE},
    }
    row["pass"] = bool(row["a_over_c"] >= want_c and row["a_over_b"] >= want_b)
    return row


def in_memory(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Every (image, label) of a batched dataset as two arrays."""
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def memory_feed(images: np.ndarray, labels: np.ndarray, batch_size: int):
    return lambda: tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def idg_feed(folder: Path, batch_size: int, size: tuple[int, int], color_mode: str, seed: int, augment: bool):
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    options = dict(rescale=1.0 / 255)
    if augment:
        options |= dict(horizontal_flip=True, zoom_range=0.3, shear_range=math.degrees(math.atan(0.3)))

    def feed():
        generator = ImageDataGenerator(**options)
        return generator.flow_from_directory(
            str(folder), target_size=size, color_mode=color_mode, batch_size=batch_size,
            class_mode="categorical", shuffle=True, seed=seed,
        )

    return feed


def photo_rows(epochs: int, rounds: int) -> dict:
    split_root = common.photo_split("photos", PHOTO_TRAIN, PHOTO_TEST)
    workspace = common.WORK / "input_ws"
    params = common.write_params(workspace, {
        "data.source": "dogs-vs-cats", "image.size": list(PHOTO_SIZE), "data.validation_fraction": 0.0,
        **AUGMENT,
    })
    count = 2 * PHOTO_TRAIN
    steps = math.ceil(count / PHOTO_BATCH)
    input_shape = (*PHOTO_SIZE, 3)
    build = lambda: blog_convnet(input_shape, 2)  # noqa: E731
    # The decoded training images, read once through the project's pipeline, for feed (c).
    determinism.seed_everything(params.seed)
    images, labels = in_memory(tfdata.load_split(params, PHOTO_BATCH, root=split_root).train)

    def project_feed(augmented: bool):
        def feed():
            data = tfdata.load_split(params, PHOTO_BATCH, root=split_root)
            if not augmented:
                return data.train
            return augmentation.augment_dataset(data.train, params.augmentation, params.seed)
        return feed

    rows = {}
    for mode in ("off", "on"):
        augmented = mode == "on"
        print(f"photos 150x150, augmentation {mode}:", flush=True)
        feeds = [("a_pipeline", project_feed(augmented), steps if augmented else None),
                 ("b_idg", idg_feed(split_root / "train", PHOTO_BATCH, PHOTO_SIZE, "rgb", params.seed, augmented), None)]
        if not augmented:  # (c) has no augmentation: measured once, the limit of both rows
            feeds.append(("c_memory", memory_feed(images, labels, PHOTO_BATCH), None))
        # The same measured epochs per feed either way; the reversed second round (one more warm-up
        # epoch per feed) only where the target is tight: a >= 0.95 c without augmentation.
        row = (side_by_side(feeds, build, count, epochs * rounds, 1, params.seed) if augmented
               else side_by_side(feeds, build, count, epochs, rounds, params.seed))
        if augmented:
            row["c_memory"] = rows["off"]["c_memory"]
        rows[mode] = with_ratios(row, TARGETS[mode])
    return {"images": count, "batch_size": PHOTO_BATCH, "image_size": list(PHOTO_SIZE), "rows": rows}


def mnist_split(train_per_class: int = 400, test_per_class: int = 100) -> tuple[Path, object]:
    """A split of the offline default's digits (mnist-sample; default 400 + 100 per class, as
    params.yaml), made once by the project's own download and split functions."""
    from imgclf.data import sources, split

    workspace = common.WORK / f"mnist_{train_per_class}_{test_per_class}_ws"
    params = common.write_params(workspace, {
        "data.validation_fraction": 0.0, "data.train_per_class": train_per_class,
        "data.test_per_class": test_per_class,
    })
    root = workspace / "data" / "split"
    if not (root / "manifest.csv").is_file():
        with common.inside(workspace):
            sources.download(params)
            split.split(params)
    return root, params


def mnist_row(epochs: int, rounds: int) -> dict:
    from imgclf.models import architectures

    root, params = mnist_split(MNIST_TRAIN, 10)
    batch_size, precision = params.baseline.batch_size, params.cnn.precision  # as the baseline stage
    count = sum(1 for _ in (root / "train").rglob("*.png"))
    size = tuple(params.image.size)
    input_shape = (*size, 1)
    build = lambda: architectures.build(input_shape, 10, params.cnn)  # noqa: E731
    determinism.seed_everything(params.seed)
    images, labels = in_memory(tfdata.load_split(params, batch_size, root=root).train)
    print(f"mnist-sample 28x28, chapter CNN ({count} images, batch {batch_size}, {precision}):", flush=True)
    row = side_by_side([
        ("a_pipeline", lambda: tfdata.load_split(params, batch_size, root=root).train, None),
        ("b_idg", idg_feed(root / "train", batch_size, size, "grayscale", params.seed, False), None),
        ("c_memory", memory_feed(images, labels, batch_size), None),
    ], build, count, epochs * rounds, 1, params.seed, precision)  # one round: see photo_rows
    rates = [row[key][RATE] for key in ("a_pipeline", "b_idg", "c_memory")]
    medians = [row[key]["median_batch_images_per_s"] for key in ("a_pipeline", "b_idg", "c_memory")]
    row["spread"] = max(rates) / min(rates) - 1
    row["spread_median"] = max(medians) / min(medians) - 1
    row["a_over_c"] = common.ratio(rates[0], rates[2])
    row["pass"] = bool(row["spread"] <= 0.10)
    return {"images": count, "batch_size": batch_size, "precision": precision, "row": row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="measured epochs per fit, after its warm-up one")
    parser.add_argument("--rounds", type=int, default=2, help="fits per feed (order reversed every other round)")
    parser.add_argument("--skip-mnist", action="store_true")
    args = parser.parse_args()
    load = common.load_now()
    started = time.perf_counter()
    figures = {"measured_epochs": args.epochs, "rounds": args.rounds, "photos": photo_rows(args.epochs, args.rounds)}
    if not args.skip_mnist:
        figures["mnist"] = mnist_row(args.epochs, args.rounds)
    figures["wall_s"] = time.perf_counter() - started
    path = common.write_result("input_pipeline", figures, load)
    print(f"written to {path.relative_to(common.ROOT)} (load before {load})")


if __name__ == "__main__":
    main()
