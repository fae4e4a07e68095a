"""The split stage: data/raw -> data/split/{train,test}/<class>/ image files + manifest.csv.

Candidates come from imgclf.data.candidates (arrays, the dogs-vs-cats zip, your own images) and are
drawn by imgclf.data.draw: deterministic under `seed`, bad files skipped and counted, duplicates
skipped and reported. The manifest lists every file with its class, split, sha256 and size (and, for
a labels CSV, the CSV's other columns); metrics/split.json counts per split and class, and every skip.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

from PIL import Image

from imgclf import atomic, paths
from imgclf.data import archive as archive_module
from imgclf.data import candidates as candidates_module
from imgclf.data import draw
from imgclf.data.catalog import SOURCES
from imgclf.errors import UserError
from imgclf.params import Params

MANIFEST_COLUMNS = ["path", "class", "split", "sha256", "width", "height"]


def _writer(root: Path) -> tuple[draw.Write, draw.Move]:
    """(write an image into root/<split>/<class>/, move a written one to another split)."""

    def write(split: str, label: str, candidate: candidates_module.Candidate, data: bytes, width: int, height: int,
              suffix: str) -> dict:
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        # A file re-encoded as PNG keeps its own extension in its name (photo.gif.png): no clash with photo.png.
        filename = candidate.filename if not suffix or candidate.filename.lower().endswith(suffix) \
            else candidate.filename + suffix
        (folder / filename).write_bytes(data)
        if not width:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        return {
            "path": f"{split}/{label}/{filename}", "class": label, "split": split,
            "sha256": hashlib.sha256(data).hexdigest(), "width": width, "height": height, **candidate.extras,
        }

    def move(row: dict, split: str) -> dict:
        _, label, filename = row["path"].split("/", 2)
        (root / split / label).mkdir(parents=True, exist_ok=True)
        (root / row["path"]).rename(root / split / label / filename)
        return row | {"path": f"{split}/{label}/{filename}", "split": split}

    return write, move


def split_metrics(params: Params, outcome: draw.Outcome, listing_skipped: list[tuple[str, str]]) -> dict:
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
        with atomic.directory(paths.SPLIT) as folder:
            write, move = _writer(folder)
            if info.kind == "arrays":
                _require(paths.RAW_ARRAYS)
                pools, listing_skipped = candidates_module.array_pools(params.data)
                outcome = draw.select(pools, params.data, params.seed, rgb, write, move)
            else:
                raw = paths.RAW_ARCHIVE if info.kind == "archive" else paths.RAW_IMAGES
                _require(raw)
                with archive_module.open_zip(raw) as opened:
                    if info.kind == "archive":
                        pools, listing_skipped = candidates_module.archive_pools(params.data, opened)
                    else:
                        pools, listing_skipped, extra_columns = candidates_module.image_pools(params.data, opened)
                        listing_skipped += _download_skips()
                    outcome = draw.select(pools, params.data, params.seed, rgb, write, move)
            write_manifest(folder / paths.MANIFEST.name, outcome.rows, MANIFEST_COLUMNS + list(extra_columns))
            metrics = split_metrics(params, outcome, listing_skipped)
            # Metrics first: if they cannot be written, the previous split stays in place too.
            atomic.write_json(paths.metrics_file("split"), metrics)
    except OSError as error:
        raise UserError(
            f"cannot write the split ({error.strerror or error}: {error.filename or paths.SPLIT}): "
            f"free disk space or fix the folder's permissions, then run again"
        ) from None
    return metrics


def write_manifest(target: Path, rows: list[dict], columns: list[str]) -> None:
    """manifest.csv: one row per file, sorted by split, class and path (streamed, not a DataFrame)."""
    rows.sort(key=lambda row: (row["split"], row["class"], row["path"]))
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
