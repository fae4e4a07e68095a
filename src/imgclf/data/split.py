"""The split stage: data/raw -> data/split/{train,test}/<class>/ image files + manifest.csv.

Selection is deterministic under `seed`: each class's candidates are sorted by name, shuffled with
a generator seeded by (seed, class index), then checked one by one; bad files are skipped and
counted with their reason, the next candidate takes their place. Where the source has no test
split of its own (mnist-sample, dogs-vs-cats), a class's first `test_per_class` good images go to
test, the next `train_per_class` to train: so growing the train set never changes the test set.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from imgclf import atomic, paths
from imgclf.data import archive as archive_module
from imgclf.data import images
from imgclf.data.catalog import SOURCES
from imgclf.data.sources import load_saved_arrays
from imgclf.errors import UserError
from imgclf.params import Params

MANIFEST_COLUMNS = ["path", "class", "split", "sha256", "width", "height"]


@dataclass(frozen=True)
class Candidate:
    """An image that may enter the split; `read` yields its bytes or the reason it has none."""

    name: str  # where it came from (archive entry or array index), for skip reports
    filename: str  # the file name it gets in the split
    read: Callable[[], tuple[bytes | None, str]]
    needs_check: bool  # photos from an archive are checked; arrays encoded here are not


@dataclass(frozen=True)
class Pool:
    """Candidates per class, and how many of each split to draw from them (in that order)."""

    by_class: dict[str, list[Candidate]]
    wants: tuple[tuple[str, int], ...]  # e.g. (("test", 100), ("train", 400))


@dataclass
class Outcome:
    """What the split wrote and skipped."""

    rows: list[dict]
    skipped: list[tuple[str, str]]
    converted: int = 0


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def array_pools(params: Params) -> tuple[list[Pool], list[tuple[str, str]]]:
    """Pools from data/raw/images.npz: one pool, or train and test pools when the source has both."""
    try:
        arrays = load_saved_arrays(paths.RAW_ARRAYS)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(
            f"{paths.RAW_ARRAYS} is unreadable ({type(error).__name__}): run the download stage "
            f"again (dvc repro -f download)"
        ) from None
    data = params.data

    def by_class(x: np.ndarray, y: np.ndarray, prefix: str) -> dict[str, list[Candidate]]:
        groups: dict[str, list[Candidate]] = {name: [] for name in arrays.class_names}
        for index, label in enumerate(y):
            name = f"{prefix}{index:06d}"
            groups[arrays.class_names[label]].append(
                Candidate(name, f"{name}.png", lambda i=index: (_png(x[i]), ""), needs_check=False)
            )
        return groups

    if len(arrays.y_test) == 0:
        pool = Pool(by_class(arrays.x_train, arrays.y_train, ""), (("test", data.test_per_class), ("train", data.train_per_class)))
        return [pool], []
    return [
        Pool(by_class(arrays.x_train, arrays.y_train, "train-"), (("train", data.train_per_class),)),
        Pool(by_class(arrays.x_test, arrays.y_test, "test-"), (("test", data.test_per_class),)),
    ], []


def archive_pools(params: Params, opened: zipfile.ZipFile) -> tuple[list[Pool], list[tuple[str, str]]]:
    """One pool from the dogs-vs-cats archive in data/raw."""
    listing = archive_module.list_entries(opened, str(paths.RAW_ARCHIVE))
    max_bytes = params.data.max_image_pixels * 4 + (1 << 20)
    groups: dict[str, list[Candidate]] = {name: [] for name in SOURCES["dogs-vs-cats"].class_names}
    for entry in listing.entries:
        groups[entry.label].append(
            Candidate(entry.name, entry.filename,
                      lambda e=entry: archive_module.read_entry(opened, e, max_bytes), needs_check=True)
        )
    wants = (("test", params.data.test_per_class), ("train", params.data.train_per_class))
    return [Pool(groups, wants)], list(listing.skipped)


def select(pools: Iterable[Pool], params: Params, write: Callable[[str, str, Candidate, bytes, int, int], dict]) -> Outcome:
    """Draw each pool's wanted counts per class, checking candidates; `write` stores one image."""
    rgb = SOURCES[params.data.source].color_mode == "rgb"
    outcome = Outcome([], [])
    pools = list(pools)
    total = sum(count for pool in pools for _, count in pool.wants) * len(pools[0].by_class)
    with tqdm(total=total, desc="split", unit="img", disable=None) as progress:
        for pool in pools:
            for class_index, (label, candidates) in enumerate(sorted(pool.by_class.items())):
                _draw_class(label, class_index, candidates, pool.wants, params, rgb, outcome, write, progress)
    return outcome


def _draw_class(label, class_index, candidates, wants, params, rgb, outcome, write, progress) -> None:
    ordered = sorted(candidates, key=lambda candidate: candidate.name)
    order = np.random.default_rng([params.seed, class_index]).permutation(len(ordered))
    queue = [(split, count) for split, count in wants]
    taken = {split: 0 for split, _ in wants}
    skipped_here = 0
    for position in order:
        if not queue:
            break
        candidate = ordered[position]
        data, reason = candidate.read()
        width = height = 0
        if data is not None and candidate.needs_check:
            checked = images.check(candidate.filename, data, rgb=rgb, non_rgb=params.data.non_rgb,
                                   max_pixels=params.data.max_image_pixels)
            data, reason, width, height = checked.data, checked.reason, checked.width, checked.height
            outcome.converted += checked.converted
        if data is None:
            outcome.skipped.append((candidate.name, reason))
            skipped_here += 1
            continue
        split, count = queue[0]
        outcome.rows.append(write(split, label, candidate, data, width, height))
        taken[split] += 1
        progress.update(1)
        if taken[split] == count:
            queue.pop(0)
    if queue:
        usable = sum(taken.values())
        wanted = " + ".join(f"data.{split}_per_class {count}" for split, count in wants)
        raise UserError(
            f"class {label!r} has {usable} usable images ({skipped_here} skipped), but "
            f"{wanted} are requested: lower data.train_per_class/data.test_per_class or add images"
        )


def _writer(root: Path) -> Callable[[str, str, Candidate, bytes, int, int], dict]:
    def write(split: str, label: str, candidate: Candidate, data: bytes, width: int, height: int) -> dict:
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / candidate.filename).write_bytes(data)
        if not width:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        return {
            "path": f"{split}/{label}/{candidate.filename}", "class": label, "split": split,
            "sha256": hashlib.sha256(data).hexdigest(), "width": width, "height": height,
        }

    return write


def split_metrics(params: Params, outcome: Outcome, listing_skipped: list[tuple[str, str]]) -> dict:
    """The DVC metrics of the split: counts per split and class, skips by reason and by file."""
    counts: dict[str, dict[str, int]] = {split: {} for split in paths.SPLITS}
    for row in outcome.rows:
        counts[row["split"]][row["class"]] = counts[row["split"]].get(row["class"], 0) + 1
    skipped = sorted(listing_skipped + outcome.skipped)
    reasons = Counter(reason.split(" (")[0] for _, reason in skipped)
    return {
        "source": params.data.source,
        "classes": len(counts["train"]),
        "counts": counts,
        "total": {split: sum(counts[split].values()) for split in paths.SPLITS},
        "converted_to_rgb": outcome.converted,
        "skipped": {
            "count": len(skipped),
            "by_reason": dict(sorted(reasons.items())),
            "files": [{"file": name, "reason": reason} for name, reason in skipped],
        },
    }


def split(params: Params) -> dict:
    """Run the split stage; returns its metrics (also written to metrics/split.json)."""
    info = SOURCES[params.data.source]
    try:
        with atomic.directory(paths.SPLIT) as folder:
            if info.kind == "arrays":
                _require(paths.RAW_ARRAYS)
                pools, listing_skipped = array_pools(params)
                outcome = select(pools, params, _writer(folder))
            else:
                _require(paths.RAW_ARCHIVE)
                with archive_module.open_zip(paths.RAW_ARCHIVE) as opened:
                    pools, listing_skipped = archive_pools(params, opened)
                    outcome = select(pools, params, _writer(folder))
            manifest = pd.DataFrame(outcome.rows, columns=MANIFEST_COLUMNS)
            manifest = manifest.sort_values(["split", "class", "path"]).reset_index(drop=True)
            manifest.to_csv(folder / paths.MANIFEST.name, index=False, lineterminator="\n")
            metrics = split_metrics(params, outcome, listing_skipped)
            # Metrics first: if they cannot be written, the previous split stays in place too.
            atomic.write_json(paths.metrics_file("split"), metrics)
    except OSError as error:
        raise UserError(
            f"cannot write the split ({error.strerror or error}: {error.filename or paths.SPLIT}): "
            f"free disk space or fix the folder's permissions, then run again"
        ) from None
    return metrics


def _require(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path} is missing: run the download stage first (dvc repro download)")
