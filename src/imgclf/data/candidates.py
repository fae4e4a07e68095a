"""What the split draws from: candidate images per class, in pools with the counts wanted of each.

A pool holds each class's candidates and how many images of each split to draw from them, in that
order: (("test", 100), ("train", 400)) draws a class's test images first, so growing the train set
never changes the test set. A count of None is `all`. A source with its own test split (keras.datasets,
a pre-split folder) gives two pools, test first.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from PIL import Image

from imgclf import paths
from imgclf.data import archive as archive_module
from imgclf.data import images, shards, snapshot
from imgclf.data import layout as layout_module
from imgclf.data.catalog import SOURCES
from imgclf.data.ledger import Ledger
from imgclf.data.sources import load_saved_arrays
from imgclf.errors import UserError
from imgclf.params import DataParams

Wants = tuple[tuple[str, int | None], ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An image that may enter the split; `read` yields its bytes or the reason it has none."""

    name: str  # where it came from (archive entry, file, array index), for skip reports
    filename: str  # the file name it gets in its class folder
    read: Callable[[], tuple[bytes | None, str]]
    needs_check: bool  # files from outside are checked; arrays encoded here are not
    extras: dict[str, str] = field(default_factory=dict)  # a labels CSV's other columns
    origin: shards.Entry | None = None  # where its bytes lie in data/raw/pack (data.storage shards)


@dataclass(frozen=True)
class Pool:
    """Candidates per class, and how many of each split to draw from them (in that order)."""

    by_class: dict[str, Sequence[Candidate]]  # in name order (the draw shuffles positions in it)
    wants: Wants


def _count(value: int | str) -> int | None:
    return None if value == "all" else int(value)


def wants(data: DataParams, splits: tuple[str, ...] = ("test", "train")) -> Wants:
    """The counts data.test_per_class / data.train_per_class ask of a pool of `splits`."""
    asked = {"test": _count(data.test_per_class), "train": _count(data.train_per_class)}
    if len(splits) == 2 and asked["test"] is None and asked["train"] is not None:
        raise UserError(
            "params.yaml: data.test_per_class = all: takes every image, leaving none for train: set "
            "data.train_per_class to all too (data.test_fraction then sizes test), or give a number"
        )
    return tuple((split, asked[split]) for split in splits)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def array_pools(data: DataParams) -> tuple[list[Pool], list[tuple[str, str]]]:
    """Pools from data/raw/images.npz: one pool, or test and train pools when the source has both."""
    try:
        arrays = load_saved_arrays(paths.RAW_ARRAYS)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(
            f"{paths.RAW_ARRAYS} is unreadable ({type(error).__name__}): run the download stage "
            f"again (dvc repro -f download)"
        ) from None

    def by_class(x: np.ndarray, y: np.ndarray, prefix: str) -> dict[str, list[Candidate]]:
        groups: dict[str, list[Candidate]] = {name: [] for name in arrays.class_names}
        for index, label in enumerate(y):
            name = f"{prefix}{index:06d}"
            groups[arrays.class_names[label]].append(
                Candidate(name, f"{name}.png", lambda i=index: (_png(x[i]), ""), needs_check=False)
            )
        return {label: sorted(candidates, key=lambda candidate: candidate.name) for label, candidates in groups.items()}

    if len(arrays.y_test) == 0:
        return [Pool(by_class(arrays.x_train, arrays.y_train, ""), wants(data))], []
    return [
        Pool(by_class(arrays.x_test, arrays.y_test, "test-"), wants(data, ("test",))),
        Pool(by_class(arrays.x_train, arrays.y_train, "train-"), wants(data, ("train",))),
    ], []


def archive_pools(data: DataParams, opened: zipfile.ZipFile) -> tuple[list[Pool], list[tuple[str, str]]]:
    """One pool from the dogs-vs-cats archive in data/raw."""
    listing = archive_module.list_entries(opened, str(paths.RAW_ARCHIVE))
    max_bytes = images.max_file_bytes(data.max_image_pixels)
    groups: dict[str, list[Candidate]] = {name: [] for name in SOURCES["dogs-vs-cats"].class_names}
    for entry in listing.entries:
        groups[entry.label].append(
            Candidate(entry.name, entry.filename,
                      lambda e=entry: archive_module.read_entry(opened, e, max_bytes), needs_check=True)
        )
    groups = {label: sorted(candidates, key=lambda candidate: candidate.name) for label, candidates in groups.items()}
    return [Pool(groups, wants(data))], list(listing.skipped)


def image_pools(data: DataParams, stored: snapshot.Stored,
                ledger: Ledger) -> tuple[list[Pool], list[tuple[str, str]], tuple[str, ...]]:
    """Pools from your own images' snapshot (data/raw/images.zip or pack/): (pools, skipped, extra CSV columns).

    The candidates go into the split's ledger as the snapshot's files stream by (in name order), and
    each class's pool reads them back by position: a million files are never held in memory."""
    source = f"data.path = {data.path}"
    if data.source == "csv":
        layout = layout_module.from_labels(pd.read_csv(paths.RAW_LABELS, dtype=str, keep_default_na=False))
    else:
        layout = layout_module.from_names(name for name, _, _ in stored.files())
    max_bytes = images.max_file_bytes(data.max_image_pixels)
    pool_of = {"test": 0, "train": 1, None: 0}
    counts: Counter[tuple[int, str]] = Counter()
    skipped: list[tuple[str, str]] = []

    def placed() -> Iterator[tuple]:
        for name, size, origin in stored.files():
            place = layout.place(name)
            if isinstance(place, str):
                skipped.append((name, place))
                continue
            split, label, filename, extras = place
            pool = pool_of[split]
            counts[pool, label] += 1
            yield (pool, label, counts[pool, label] - 1, name, filename, size, extras,
                   *((origin.shard, origin.offset, origin.sha256) if origin else (None, None, None)))

    ledger.add_candidates(placed())
    splits = ("test", "train") if layout.pre_split else (None,)
    layout.check({split: {label for pool, label in counts if pool == pool_of[split]} for split in splits}, source)

    def read(name: str, size: int, origin: shards.Entry | None) -> tuple[bytes | None, str]:
        if size > max_bytes:
            return None, f"too large to decode safely ({size} bytes)"
        try:
            return stored.read(name, origin), ""
        except archive_module.READ_ERRORS as error:
            return None, f"unreadable ({str(error)[:60]})"

    def candidate(row: tuple) -> Candidate:
        name, filename, size, extras, shard, offset, sha256 = row
        origin = shards.Entry(name, size, sha256, shard, offset) if shard else None
        return Candidate(name, filename, lambda: read(name, size, origin), needs_check=True, extras=extras,
                         origin=origin)

    def pool(split: str | None) -> Pool:
        number = pool_of[split]
        by_class = {label: InLedger(ledger, number, label, count, candidate)
                    for (index, label), count in sorted(counts.items()) if index == number}
        return Pool(by_class, wants(data, (split,)) if split else wants(data))

    return [pool(split) for split in splits], skipped, layout.extra_columns


class InLedger(Sequence):
    """A class's candidates in the split's ledger, in name order, each read from the snapshot when drawn."""

    def __init__(self, ledger: Ledger, pool: int, label: str, count: int, make: Callable[[tuple], Candidate]):
        self._ledger, self._pool, self._label, self._count, self._make = ledger, pool, label, count, make

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, position):  # type: ignore[override]
        return self.many([position])[0]

    def many(self, positions) -> list[Candidate]:
        """The candidates at `positions`, in that order, in one look-up."""
        return [self._make(row) for row in self._ledger.candidates(self._pool, self._label, [int(p) for p in positions])]


def at(candidates: Sequence[Candidate], positions) -> list[Candidate]:
    """The candidates at `positions`, in that order (a ledger's fetched in one look-up)."""
    if isinstance(candidates, InLedger):
        return candidates.many(positions)
    return [candidates[position] for position in positions]
