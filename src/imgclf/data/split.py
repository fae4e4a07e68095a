"""The split stage: data/raw -> data/split/{train,test}/<class>/ image files + manifest.csv.

Candidates come from imgclf.data.candidates (arrays, the dogs-vs-cats zip, your own images) and are
drawn by imgclf.data.draw: deterministic under `seed`, bad files skipped and counted, duplicates
skipped and reported. The manifest lists every file with its class, split, sha256 and size (and, for
a labels CSV, the CSV's other columns); metrics/split.json counts per split and class, and every skip.

With data.storage shards no image is written as a file: the manifest also names where each image's
bytes lie (shard, offset, size; the shard as raw:<id> or split:<id>). An image the checks left as
it was points into the snapshot's pack (data/raw/pack); one they re-encoded (rotated upright, converted
to RGB, an array drawn as PNG) goes into the split's own pack (data/split/pack), named by its content.
imgclf.data.listing reads either layout back as the same files in the same order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sqlite3
from collections import Counter
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from PIL import Image

from imgclf import atomic, paths
from imgclf.data import archive as archive_module
from imgclf.data import candidates as candidates_module
from imgclf.data import draw, shards, snapshot
from imgclf.data.catalog import SOURCES
from imgclf.data.ledger import Ledger
from imgclf.errors import UserError
from imgclf.params import Params

MANIFEST_COLUMNS = ["path", "class", "split", "sha256", "width", "height"]
SHARD_COLUMNS = ["shard", "offset", "size"]  # data.storage shards: where each image's bytes lie


def _row(split: str, label: str, candidate: candidates_module.Candidate, data: bytes, width: int, height: int,
         suffix: str) -> dict:
    """An image's manifest row (its file name: the candidate's, + the suffix of a re-encoding)."""
    # A file re-encoded as PNG keeps its own extension in its name (photo.gif.png): no clash with photo.png.
    filename = candidate.filename if not suffix or candidate.filename.lower().endswith(suffix) \
        else candidate.filename + suffix
    if not width:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    return {
        "path": f"{split}/{label}/{filename}", "class": label, "split": split,
        "sha256": hashlib.sha256(data).hexdigest(), "width": width, "height": height, **candidate.extras,
    }


def _moved(row: dict, split: str) -> dict:
    _, label, filename = row["path"].split("/", 2)
    return row | {"path": f"{split}/{label}/{filename}", "split": split}


def _writer(root: Path) -> tuple[draw.Write, draw.Move]:
    """(write an image into root/<split>/<class>/, move a written one to another split)."""

    def write(split: str, label: str, candidate: candidates_module.Candidate, data: bytes, width: int, height: int,
              suffix: str) -> tuple[dict, None]:
        row = _row(split, label, candidate, data, width, height, suffix)
        (root / split / label).mkdir(parents=True, exist_ok=True)
        (root / row["path"]).write_bytes(data)
        return row, None

    def move(row: dict, split: str) -> dict:
        moved = _moved(row, split)
        (root / split / moved["class"]).mkdir(parents=True, exist_ok=True)
        (root / row["path"]).rename(root / moved["path"])
        return moved

    return write, move


class _Pointers:
    """data.storage shards: rows that point at each image's bytes instead of files.

    `write` points an unchanged packed image at data/raw/pack and keeps the others' bytes (by content);
    `finish` packs those into root/pack and points their rows there."""

    def __init__(self, root: Path, ledger: Ledger):
        self.root = root
        self.ledger = ledger
        self.pending = root / ".pending"  # the images for the split's own pack, as files named by content (not in memory)

    def write(self, split: str, label: str, candidate: candidates_module.Candidate, data: bytes, width: int,
              height: int, suffix: str) -> tuple[dict, str | None]:
        row = _row(split, label, candidate, data, width, height, suffix)
        origin = candidate.origin
        if origin is not None and origin.sha256 == row["sha256"]:
            return row | {"shard": shards.reference("raw", origin.shard), "offset": origin.offset,
                          "size": origin.size}, None
        key = row["sha256"] + PurePosixPath(row["path"]).suffix.lower()
        if self.ledger.add_pending(key):
            self.pending.mkdir(exist_ok=True)
            (self.pending / key).write_bytes(data)
        return row, key  # its row points at the bytes once finish() has packed them

    def finish(self) -> None:
        if not self.pending.is_dir():
            return
        folder = self.root / SPLIT_PACK
        shards.pack(_PendingFiles(self.ledger, self.pending), folder)
        for entry in shards.entries(folder):
            self.ledger.point(entry.path, {"shard": shards.reference("split", entry.shard), "offset": entry.offset,
                                           "size": entry.size})
        shutil.rmtree(self.pending)


class _PendingFiles:
    """The pending files in key order, as the pack reads them (twice: sizes, then bytes), from the ledger."""

    def __init__(self, ledger: Ledger, folder: Path):
        self.ledger, self.folder = ledger, folder

    def __iter__(self) -> Iterator[snapshot.Member]:
        for key in self.ledger.pending_keys():
            path = self.folder / key
            yield snapshot.Member(key, path.stat().st_size, path.read_bytes)


LEDGER = ".ledger.sqlite"  # the split's working tables (imgclf.data.ledger), in its temp folder
SPLIT_PACK = "pack"  # data/split/pack: the images of a sharded split that data/raw/pack does not hold as they are


def split_metrics(params: Params, outcome: draw.Outcome, ledger: Ledger, listing_skipped: list[tuple[str, str]]) -> dict:
    """The DVC metrics of the split: counts per split and class, skips by reason and by file."""
    counts: dict[str, dict[str, int]] = {split: {} for split in paths.SPLITS}
    for split, label, images in sorted(ledger.counts()):
        counts[split][label] = images
    skipped = sorted(listing_skipped + outcome.skipped)
    reasons = Counter(reason.split(" (")[0] for _, reason in skipped)
    return {
        "source": params.data.source,
        "classes": len(counts["train"]),
        "counts": counts,
        "total": {split: sum(counts[split].values()) for split in paths.SPLITS},
        "converted_to_rgb": outcome.converted,
        "rotated_upright": outcome.rotated,
        "duplicates": {
            "count": len(outcome.duplicates),
            "files": [{"file": name, "same_as": first} for name, first in sorted(outcome.duplicates)],
        },
        "skipped": {
            "count": len(skipped),
            "by_reason": dict(sorted(reasons.items())),
            "files": [{"file": name, "reason": reason} for name, reason in skipped],
        },
    }


def split(params: Params) -> dict:
    """Run the split stage; returns its metrics (also written to metrics/split.json)."""
    info = SOURCES[params.data.source]
    rgb = info.color_mode == "rgb"
    extra_columns: tuple[str, ...] = ()
    try:
        with atomic.directory(paths.SPLIT) as folder, ExitStack() as opened:
            ledger = Ledger(folder / LEDGER)  # deleted before the folder becomes data/split
            opened.callback(ledger.close)
            if info.kind == "arrays":
                _require(paths.RAW_ARRAYS)
                pools, listing_skipped = candidates_module.array_pools(params.data)
            elif info.kind == "archive":
                _require(paths.RAW_ARCHIVE)
                pools, listing_skipped = candidates_module.archive_pools(
                    params.data, opened.enter_context(archive_module.open_zip(paths.RAW_ARCHIVE)))
            else:
                if not paths.RAW_PACK.is_dir():
                    _require(paths.RAW_IMAGES)
                stored = opened.enter_context(snapshot.Stored(paths.RAW))
                pools, listing_skipped, extra_columns = candidates_module.image_pools(params.data, stored, ledger)
                listing_skipped += _download_skips()
            storage = _storage(params, pools)
            if storage == "shards":
                pointers = _Pointers(folder, ledger)
                outcome = draw.select(pools, params.data, params.seed, rgb, pointers.write, _moved, ledger)
                pointers.finish()
                extra_columns = (*SHARD_COLUMNS, *extra_columns)
            else:
                outcome = draw.select(pools, params.data, params.seed, rgb, *_writer(folder), ledger)
            write_manifest(folder / paths.MANIFEST.name, ledger.rows(), MANIFEST_COLUMNS + list(extra_columns))
            metrics = split_metrics(params, outcome, ledger, listing_skipped) | {"storage": storage}
            # Metrics first: if they cannot be written, the previous split stays in place too.
            atomic.write_json(paths.metrics_file("split"), metrics)
    except OSError as error:
        raise UserError(
            f"cannot write the split ({error.strerror or error}: {error.filename or paths.SPLIT}): "
            f"free disk space or fix the folder's permissions, then run again"
        ) from None
    except sqlite3.OperationalError as error:  # the ledger
        if "disk" not in str(error) and "full" not in str(error):
            raise
        raise UserError(f"cannot write the split's working tables ({error}: {paths.SPLIT.parent}): free disk "
                        f"space, then run again") from None
    return metrics


def _storage(params: Params, pools: list[candidates_module.Pool]) -> str:
    """data.storage resolved: what the download chose for a packed snapshot, else by the candidates' count."""
    if paths.RAW_PACK.is_dir() and SOURCES[params.data.source].kind == "images":
        return "shards" if params.data.storage != "folders" else "folders"
    images = sum(len(files) for pool in pools for files in pool.by_class.values())
    return shards.storage_for(params.data.storage, images, params.data.shards_from)


def write_manifest(target: Path, rows: Iterable[dict], columns: list[str]) -> None:
    """manifest.csv: one row per file, in the order given (the ledger's: by split, class and path), streamed."""
    with open(target, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([row.get(column, "") for column in columns] for row in rows)


def _download_skips() -> list[tuple[str, str]]:
    """Files the download stage could not read into the snapshot (source.json), for the skip report."""
    if not paths.RAW_INFO.is_file():
        return []
    return [tuple(item) for item in json.loads(paths.RAW_INFO.read_text(encoding="utf-8")).get("skipped", [])]


def _require(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path} is missing: run the download stage first (dvc repro download)")
