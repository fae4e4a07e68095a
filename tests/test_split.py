"""The split stage: deterministic selection, per-class counts, class names, manifest and metrics."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgclf import paths
from imgclf.data import layout, sources, split
from imgclf.data.catalog import SOURCES
from imgclf.errors import UserError

from helpers.archive_builders import BAD_FILES, bad_entry_name, kaggle_files, write_zip


def manifest() -> pd.DataFrame:
    return pd.read_csv(paths.MANIFEST, dtype={"class": str})


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_counts_per_class_follow_params(raw_mnist_sample, write_params) -> None:
    config = write_params({"data.train_per_class": 12, "data.test_per_class": 5})
    metrics = split.split(config)
    digits = [str(digit) for digit in range(10)]
    assert metrics["counts"] == {"train": dict.fromkeys(digits, 12), "test": dict.fromkeys(digits, 5)}
    assert metrics["total"] == {"train": 120, "test": 50}
    assert metrics["classes"] == 10 and metrics["source"] == "mnist-sample"
    for split_name, count in (("train", 12), ("test", 5)):
        for digit in digits:
            assert len(list((paths.SPLIT / split_name / digit).iterdir())) == count
    assert json.loads(paths.metrics_file("split").read_text()) == metrics


def test_manifest_columns_hashes_and_sizes(raw_mnist_sample, write_params) -> None:
    split.split(write_params({"data.train_per_class": 4, "data.test_per_class": 2}))
    table = manifest()
    assert list(table.columns) == ["path", "class", "split", "sha256", "width", "height"]
    assert len(table) == 60
    assert table.equals(table.sort_values(["split", "class", "path"]).reset_index(drop=True))
    listed = sorted(table["path"])
    on_disk = [name for name in files_under(paths.SPLIT) if name != "manifest.csv"]
    assert listed == on_disk
    for row in table.itertuples():
        data = (paths.SPLIT / row.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (row.width, row.height) == (28, 28)
            assert image.mode == "L"
        assert row.path.split("/")[:2] == [row.split, row._2]  # path = <split>/<class>/<file>


def test_same_seed_same_split_other_seed_other_selection(raw_mnist_sample, write_params, tmp_path) -> None:
    counts = {"data.train_per_class": 10, "data.test_per_class": 4}
    split.split(write_params({**counts, "seed": 7}))
    first_manifest = paths.MANIFEST.read_bytes()
    first_metrics = paths.metrics_file("split").read_bytes()
    split.split(write_params({**counts, "seed": 7}))
    assert paths.MANIFEST.read_bytes() == first_manifest
    assert paths.metrics_file("split").read_bytes() == first_metrics
    split.split(write_params({**counts, "seed": 8}))
    other = manifest()
    first = pd.read_csv(io.BytesIO(first_manifest), dtype={"class": str})
    assert set(other["path"]) != set(first["path"])
    assert set(other["sha256"]) != set(first["sha256"])
    # Same shape of result, only the selection differs.
    assert other.groupby(["split", "class"]).size().equals(first.groupby(["split", "class"]).size())


def test_test_set_unchanged_when_train_grows(raw_mnist_sample, write_params) -> None:
    split.split(write_params({"data.train_per_class": 5, "data.test_per_class": 4}))
    small = manifest()
    split.split(write_params({"data.train_per_class": 25, "data.test_per_class": 4}))
    large = manifest()
    test_small = small[small["split"] == "test"].reset_index(drop=True)
    test_large = large[large["split"] == "test"].reset_index(drop=True)
    assert test_small.equals(test_large)
    # The documented order (first test, then train) also makes the smaller train set a prefix.
    assert set(small[small["split"] == "train"]["sha256"]) <= set(large[large["split"] == "train"]["sha256"])
    # No image is in both train and test.
    assert not set(large[large["split"] == "train"]["sha256"]) & set(test_large["sha256"])


def write_fake_keras_raw(source: str, train: int, test: int) -> None:
    """data/raw/images.npz as the download stage would write it for a keras source."""
    info = SOURCES[source]
    rng = np.random.default_rng(1)
    shape = info.image_size + ((3,) if info.color_mode == "rgb" else ())
    classes = len(info.class_names)

    def part(count: int):
        return rng.integers(0, 256, size=(count, *shape), dtype=np.uint8), (np.arange(count) % classes).reshape(-1, 1)

    arrays = sources.arrays_from_keras(source, part(train * classes), part(test * classes))
    sources.save_arrays(paths.RAW_ARRAYS, arrays)


@pytest.mark.parametrize("source", ["fashion-mnist", "cifar10", "cifar100"])
def test_class_names_and_modes_per_keras_source(workspace, write_params, source: str) -> None:
    info = SOURCES[source]
    write_fake_keras_raw(source, train=3, test=2)
    metrics = split.split(write_params({"data.source": source, "data.train_per_class": 2,
                                        "data.test_per_class": 1}))
    for split_name, count in (("train", 2), ("test", 1)):
        folders = sorted(path.name for path in (paths.SPLIT / split_name).iterdir())
        assert folders == sorted(info.class_names)
        assert metrics["counts"][split_name] == dict.fromkeys(info.class_names, count)
    table = manifest()
    # The official test split feeds test, the train split feeds train.
    assert table[table["split"] == "test"]["path"].str.contains("/test-").all()
    assert table[table["split"] == "train"]["path"].str.contains("/train-").all()
    with Image.open(paths.SPLIT / table["path"][0]) as image:
        assert image.mode == ("RGB" if info.color_mode == "rgb" else "L")
        assert image.size == info.image_size[::-1]


def test_keras_source_test_pool_unchanged_when_train_grows(workspace, write_params) -> None:
    write_fake_keras_raw("cifar10", train=6, test=3)
    split.split(write_params({"data.source": "cifar10", "data.train_per_class": 2, "data.test_per_class": 3}))
    small = manifest()
    split.split(write_params({"data.source": "cifar10", "data.train_per_class": 6, "data.test_per_class": 3}))
    large = manifest()
    assert small[small["split"] == "test"].reset_index(drop=True).equals(
        large[large["split"] == "test"].reset_index(drop=True))


def use_archive(write_params, tmp_path: Path, files: dict[str, bytes], **overrides):
    """Download a test-built archive through data.archive; return the params."""
    archive = write_zip(tmp_path / "inputs" / "train.zip", files)
    config = write_params({"data.source": "dogs-vs-cats", "data.archive": str(archive), **overrides})
    sources.download(config)
    return config


def test_dogs_vs_cats_class_names_and_rgb(workspace, write_params, tmp_path) -> None:
    config = use_archive(write_params, tmp_path, kaggle_files(cats=5, dogs=5),
                         **{"data.train_per_class": 3, "data.test_per_class": 2})
    metrics = split.split(config)
    assert metrics["counts"] == {"train": {"cat": 3, "dog": 3}, "test": {"cat": 2, "dog": 2}}
    table = manifest()
    for row in table.itertuples():
        assert Path(row.path).name.startswith(f"{row._2}.")  # cat.N.jpg under cat/
        with Image.open(paths.SPLIT / row.path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"


def test_shortfall_names_the_class_and_counts(raw_mnist_sample, write_params) -> None:
    config = write_params({"data.train_per_class": 450, "data.test_per_class": 100})
    with pytest.raises(UserError) as caught:
        split.split(config)
    assert str(caught.value) == (
        "class '0' has 500 usable images (0 skipped), but data.test_per_class 100 + "
        "data.train_per_class 450 are requested: lower data.train_per_class/data.test_per_class (or set them to all) "
        "or add images"
    )
    assert not paths.SPLIT.exists() and not paths.metrics_file("split").exists()
    assert sorted(path.name for path in paths.DATA.iterdir()) == ["raw"]  # no temp folder left


def test_shortfall_counts_skipped_images(workspace, write_params, tmp_path) -> None:
    files = kaggle_files(cats=3, dogs=6)
    for number, bad in enumerate(BAD_FILES[:2], start=100):
        files[bad_entry_name(bad, number)] = bad.make()
    config = use_archive(write_params, tmp_path, files,
                         **{"data.train_per_class": 2, "data.test_per_class": 2})
    with pytest.raises(UserError, match=r"^class 'cat' has 3 usable images \(2 skipped\), but "
                                        r"data\.test_per_class 2 \+ data\.train_per_class 2 are requested"):
        split.split(config)


def test_split_without_download_says_what_to_run(workspace, write_params) -> None:
    with pytest.raises(UserError, match=r"data/raw/images\.npz is missing: run the download stage first"):
        split.split(write_params())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong-arrays"])
def test_unreadable_raw_arrays_say_to_download_again(raw_mnist_sample, write_params, damage: str) -> None:
    data = paths.RAW_ARRAYS.read_bytes()
    if damage == "truncated":
        paths.RAW_ARRAYS.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        paths.RAW_ARRAYS.write_bytes(b"not an npz" * 10)
    else:
        np.savez(paths.RAW_ARRAYS, something_else=np.zeros(3))
    with pytest.raises(UserError, match=r"^data/raw/images\.npz is unreadable \(\w+\): run the download "
                                        r"stage again \(dvc repro -f download\)$"):
        split.split(write_params())
    assert not paths.SPLIT.exists()


def layout_of_all(names: list[str]) -> tuple[bool, int]:
    """The layout rule read over every name at once: the single folders wrapping all files (never train/ or
    test/), then whether the folders just below them are exactly train/ and test/."""
    items = [tuple(name.split("/")) for name in names if "__MACOSX" not in name]
    depth = 0
    while all(len(item) > depth + 2 for item in items) and len({item[depth] for item in items}) == 1 \
            and items[0][depth] not in layout.SPLIT_FOLDERS:
        depth += 1
    tops = {item[depth] for item in items if len(item) > depth + 1}
    return tops == set(layout.SPLIT_FOLDERS), depth


@pytest.mark.parametrize("seed", range(300))
def test_the_layout_read_in_one_pass_is_the_rule_over_all_names(seed: int) -> None:
    rng = random.Random(seed)
    parts = ["pets", "train", "test", "cat", "dog", "x", "__MACOSX"]
    prefix = [rng.choice(parts[:6]) for _ in range(rng.randrange(3))]
    names = sorted({"/".join(prefix + [rng.choice(parts) for _ in range(rng.randrange(3))] + [f"{index}.jpg"])
                    for index in range(rng.randrange(1, 8))})
    if all("__MACOSX" in name for name in names):
        names.append("cat/0.jpg")
    found = layout.from_names(names)
    assert (found.pre_split, found.depth) == layout_of_all(names), names
