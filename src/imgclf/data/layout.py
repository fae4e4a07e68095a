"""Which class (and, for a pre-split layout, which split) each file of your own images belongs to.

Folder and archive layouts, after any single wrapping folder (`pets.zip` holding `pets/cat/...`):
- `<class>/<images>` (sub-folders below a class belong to it): the split draws train and test.
- `train/<class>/<images>` and `test/<class>/<images>`: the user's split, kept as it is.
A file outside a class folder is skipped and counted. A CSV gives each file its `label`, and its other
columns travel into the split's manifest.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd

from imgclf.data.archive import JUNK
from imgclf.errors import UserError

SPLIT_FOLDERS = ("train", "test")
RESERVED = ("class", "split", "sha256", "width", "height")  # the manifest's own columns


@dataclass
class Layout:
    """Files by split (None: not pre-split) and class, what was skipped, and the CSV's extra columns.

    Each file is (its name in the snapshot, its name in its class folder: the path below the class
    folder, or the CSV's path, with `/` as `__`, so no two files of a class share a name).
    """

    files: dict[str | None, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    extras: dict[str, dict[str, str]] = field(default_factory=dict)  # file -> {column: value}
    extra_columns: tuple[str, ...] = ()

    @property
    def pre_split(self) -> bool:
        return None not in self.files


def from_names(names: list[str], source: str) -> Layout:
    """The layout of a folder or archive snapshot's file names."""
    layout = Layout()
    kept = []
    for name in names:
        if any(part in name for part in JUNK):
            layout.skipped.append((name, "system file (Thumbs.db, __MACOSX, ...)"))
        else:
            kept.append(name)
    depth = _wrapping_depth(kept)
    tops = {item[depth] for item in map(_parts, kept) if len(item) > depth + 1}
    pre_split = tops == set(SPLIT_FOLDERS)
    for name in kept:
        item = _parts(name)
        inner = item[depth + 1:] if pre_split else item[depth:]
        if len(inner) < 2:
            where = f"{item[depth]}/<class>/<file>" if pre_split else "<class>/<file>"
            layout.skipped.append((name, f"not in a class folder ({where})"))
            continue
        split = item[depth] if pre_split else None
        if pre_split and split not in SPLIT_FOLDERS:
            layout.skipped.append((name, "outside train/ and test/ in a pre-split layout"))
            continue
        layout.files.setdefault(split, defaultdict(list))[inner[0]].append((name, "__".join(inner[1:])))
    _check_classes(layout, source)
    return layout


def from_labels(labels: pd.DataFrame, source: str) -> Layout:
    """The layout a labels CSV gives (path, label, extra columns), as download normalised it.

    An extra column named like one of the manifest's own (class, split, sha256, ...) gets a `csv_` prefix.
    """
    labels = labels.rename(columns={column: f"csv_{column}" for column in labels.columns if column in RESERVED})
    layout = Layout(extra_columns=tuple(column for column in labels.columns if column not in ("path", "label")))
    by_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for record in labels.to_dict("records"):
        by_class[record["label"]].append((record["path"], record["path"].replace("/", "__")))
        layout.extras[record["path"]] = {column: record[column] for column in layout.extra_columns}
    layout.files[None] = by_class
    _check_classes(layout, source)
    return layout


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(name).parts


def _wrapping_depth(names: list[str]) -> int:
    """How many single folders wrap every file (0 for `cat/1.jpg`, 1 for `pets/cat/1.jpg`)."""
    depth = 0
    while names and all(len(_parts(name)) > depth + 2 for name in names) \
            and len({_parts(name)[depth] for name in names}) == 1:
        if _parts(names[0])[depth] in SPLIT_FOLDERS:
            break
        depth += 1
    return depth


def _check_classes(layout: Layout, source: str) -> None:
    for split, classes in layout.files.items():
        if len(classes) < 2:
            where = f" {split}/" if split else ""
            found = ", ".join(sorted(classes)) or "none"
            raise UserError(
                f"{source}:{where} found {len(classes)} class ({found}): a classifier needs at least two, one "
                f"folder of images (or one CSV label) per class"
            )
    if layout.pre_split and set(layout.files["train"]) != set(layout.files["test"]):
        train, test = set(layout.files["train"]), set(layout.files["test"])
        raise UserError(
            f"{source}: train/ and test/ have different classes (only in train: {sorted(train - test)}, only "
            f"in test: {sorted(test - train)}): give both the same class folders"
        )
