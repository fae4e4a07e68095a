"""Which class (and, for a pre-split layout, which split) each file of your own images belongs to.

Folder and archive layouts, after any single wrapping folder (`pets.zip` holding `pets/cat/...`):
- `<class>/<images>` (sub-folders below a class belong to it): the split draws train and test.
- `train/<class>/<images>` and `test/<class>/<images>`: the user's split, kept as it is.
A file outside a class folder is skipped and counted. A CSV gives each file its `label`, and its other
columns travel into the split's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable

import pandas as pd

from imgclf.data.archive import JUNK
from imgclf.errors import UserError

SPLIT_FOLDERS = ("train", "test")
RESERVED = ("class", "split", "sha256", "width", "height")  # the manifest's own columns


Place = tuple[str | None, str, str, dict[str, str]]  # (split or None, class, file name in its class folder, extras)


@dataclass
class Layout:
    """Where each file belongs: `place(name)` gives its split (None: not pre-split), class and name in its
    class folder (the path below the class folder, or the CSV's path, with `/` as `__`, so no two files of
    a class share a name), and a labels CSV's other columns; or the reason it is skipped.

    Deciding the layout reads the names once; placing them is a second pass the caller streams, so a
    million names are never held at once (a CSV's labels are: they come as a table).
    """

    pre_split: bool = False
    depth: int = 0  # single folders wrapping everything
    labels: dict[str, tuple[str, dict[str, str]]] | None = None  # a CSV's: path -> (label, extras)
    extra_columns: tuple[str, ...] = ()

    def place(self, name: str) -> Place | str:
        if self.labels is not None:
            label, extras = self.labels[name]
            return None, label, name.replace("/", "__"), extras
        if any(part in name for part in JUNK):
            return "system file (Thumbs.db, __MACOSX, ...)"
        item = _parts(name)
        depth = self.depth
        inner = item[depth + 1:] if self.pre_split else item[depth:]
        if len(inner) < 2:
            where = f"{item[depth]}/<class>/<file>" if self.pre_split else "<class>/<file>"
            return f"not in a class folder ({where})"
        split = item[depth] if self.pre_split else None
        if self.pre_split and split not in SPLIT_FOLDERS:
            return "outside train/ and test/ in a pre-split layout"
        return split, inner[0], "__".join(inner[1:]), {}

    def check(self, classes: dict[str | None, set[str]], source: str) -> None:
        """Refuse a split (or the whole set) with fewer than two classes, or train and test with different ones."""
        for split in ("test", "train") if self.pre_split else (None,):
            found = classes.get(split, set())
            if len(found) < 2:
                where = f" {split}/" if split else ""
                raise UserError(
                    f"{source}:{where} found {len(found)} class ({', '.join(sorted(found)) or 'none'}): a classifier "
                    f"needs at least two, one folder of images (or one CSV label) per class"
                )
        if self.pre_split and classes["train"] != classes["test"]:
            train, test = classes["train"], classes["test"]
            raise UserError(
                f"{source}: train/ and test/ have different classes (only in train: {sorted(train - test)}, only "
                f"in test: {sorted(test - train)}): give both the same class folders"
            )


def from_names(names: Iterable[str]) -> Layout:
    """The layout of a folder or archive snapshot's file names, in one pass holding only the folders they
    all start with: how many single folders wrap every file (never train/ or test/; 0 for `cat/1.jpg`, 1
    for `pets/cat/1.jpg`), and whether the folders just below those are exactly train/ and test/."""
    common: list[str] | None = None  # the parts every name so far starts with
    shortest = depth = 0
    tops: set[str] = set()  # the folders at `depth` that are train/ or test/ ...
    other_top = False  # ... and whether there is any other
    for name in names:
        if any(part in name for part in JUNK):
            continue
        item = _parts(name)
        before = common
        if common is None:
            common, shortest = list(item), len(item)
        else:
            shared = 0
            while shared < min(len(common), len(item)) and common[shared] == item[shared]:
                shared += 1
            common, shortest = common[:shared], min(shortest, len(item))
        split_at = next((index for index, part in enumerate(common) if part in SPLIT_FOLDERS), len(common))
        wrapped = max(0, min(shortest - 2, len(common), split_at))  # never grows from one name to the next
        if before is not None and wrapped < depth:  # every earlier name has a folder at `wrapped`: the same one
            tops, other_top = ({before[wrapped]}, False) if before[wrapped] in SPLIT_FOLDERS else (set(), True)
        depth = wrapped
        if len(item) > depth + 1:
            if item[depth] in SPLIT_FOLDERS:
                tops.add(item[depth])
            else:
                other_top = True
    return Layout(pre_split=not other_top and tops == set(SPLIT_FOLDERS), depth=depth)


def from_labels(labels: pd.DataFrame) -> Layout:
    """The layout a labels CSV gives (path, label, extra columns), as download normalised it.

    An extra column named like one of the manifest's own (class, split, sha256, ...) gets a `csv_` prefix.
    """
    labels = labels.rename(columns={column: f"csv_{column}" for column in labels.columns if column in RESERVED})
    extra_columns = tuple(column for column in labels.columns if column not in ("path", "label"))
    placed = {record["path"]: (record["label"], {column: record[column] for column in extra_columns})
              for record in labels.to_dict("records")}
    return Layout(labels=placed, extra_columns=extra_columns)


def _parts(name: str) -> tuple[str, ...]:
    parts = name.split("/")
    if "" in parts or "." in parts:  # `a//b`, `./a`, `a/`: as pathlib reads them
        return PurePosixPath(name).parts
    return tuple(parts)

