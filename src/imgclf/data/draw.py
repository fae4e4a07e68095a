"""Drawing a split from pools: seeded per class, checking each candidate, skipping and counting bad files.

Each class's candidates, in name order, are shuffled with a generator seeded by (seed, class index),
then checked one by one; a bad file is skipped with its reason and the next candidate takes its place.
A file whose bytes equal one already drawn (in any class or split) is skipped as a duplicate of it,
so no image is ever in both train and test. With both counts `all`, every usable image of a class is
drawn and its first round(test_fraction x n), in the seeded order, go to test: a stratified split.
The rows written and the digests drawn go to the split's ledger (imgclf.data.ledger), not memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from imgclf.data import images
from imgclf.data.candidates import Candidate, Pool, at
from imgclf.data.ledger import BATCH, Ledger
from imgclf.errors import UserError
from imgclf.params import DataParams


@dataclass
class Outcome:
    """What the split skipped and changed (the rows it wrote are in its ledger)."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, the file it repeats)
    converted: int = 0
    rotated: int = 0


CHUNK = 10_000  # rows moved at a time by the stratified split

# write(split, label, candidate, data, width, height, suffix) -> (the manifest row of the written file,
# the key of bytes still to be packed, or None)
Write = Callable[[str, str, Candidate, bytes, int, int, str], tuple[dict, str | None]]
# move(row, split) -> the row of the same file moved to another split
Move = Callable[[dict, str], dict]


def select(pools: Iterable[Pool], data: DataParams, seed: int, rgb: bool, write: Write, move: Move,
           ledger: Ledger) -> Outcome:
    """Draw each pool's wanted counts per class, checking candidates; `write` stores one image."""
    outcome = Outcome()
    pools = list(pools)
    total = sum(count if count is not None else len(candidates)
                for pool in pools for split, count in pool.wants for candidates in pool.by_class.values())
    with tqdm(total=total, desc="split", unit="img", disable=None) as progress:
        for pool in pools:
            for class_index, (label, candidates) in enumerate(sorted(pool.by_class.items())):
                drawn = _draw_class(label, class_index, candidates, pool, data, seed, rgb, outcome, ledger, write,
                                    progress)
                if len(pool.wants) > 1 and all(count is None for _, count in pool.wants):  # both `all`
                    _stratify(label, drawn, data.test_fraction, ledger, move)
    return outcome


def _draw_class(label, class_index, candidates, pool, data, seed, rgb, outcome, ledger, write, progress) -> range:
    """Draw one class (its candidates in name order); returns the ledger ids of its rows, in draw order."""
    order = np.random.default_rng([seed, class_index]).permutation(len(candidates))
    queue = list(pool.wants)
    taken = {split: 0 for split, _ in pool.wants}
    stratified = len(pool.wants) > 1 and all(count is None for _, count in pool.wants)
    first = last = 0
    skipped_here = 0
    for candidate in _visit(candidates, order):
        if not queue:
            break
        data_bytes, reason = candidate.read()
        width = height = 0
        suffix = ""
        digest = hashlib.sha256(data_bytes).digest() if data_bytes is not None else b""
        same_as = ledger.first_with(digest, candidate.name) if digest else None
        if same_as is not None:
            outcome.duplicates.append((candidate.name, same_as))
            data_bytes, reason = None, f"duplicate of {same_as}"
        if data_bytes is not None and candidate.needs_check:
            checked = images.check(candidate.filename, data_bytes, rgb=rgb, non_rgb=data.non_rgb,
                                   max_pixels=data.max_image_pixels)
            data_bytes, reason, width, height = checked.data, checked.reason, checked.width, checked.height
            suffix = checked.suffix
            outcome.converted += checked.converted
            outcome.rotated += checked.rotated
        if data_bytes is None:
            if digest and same_as is None:
                ledger.forget(digest)  # a bad file's bytes make no later file a duplicate
            outcome.skipped.append((candidate.name, reason))
            skipped_here += 1
            continue
        split, count = ("train", None) if stratified else queue[0]  # stratified: test is moved out later
        last = ledger.add_row(*write(split, label, candidate, data_bytes, width, height, suffix))
        first = first or last
        taken[split] += 1
        progress.update(1)
        if taken[split] == count:
            queue.pop(0)
    unmet = [(split, count) for split, count in queue if count is not None]
    if unmet:
        usable = sum(taken.values())
        wanted = " + ".join(f"data.{split}_per_class {count}" for split, count in pool.wants if count is not None)
        raise UserError(
            f"class {label!r} has {usable} usable images ({skipped_here} skipped), but "
            f"{wanted} are requested: lower data.train_per_class/data.test_per_class (or set them to all) or add images"
        )
    return range(first, last + 1) if first else range(0)


def _visit(candidates, order) -> Iterator[Candidate]:
    """The candidates in the seeded order, looked up a batch at a time."""
    for start in range(0, len(order), BATCH):
        yield from at(candidates, order[start:start + BATCH])


def _stratify(label: str, drawn: range, fraction: float, ledger: Ledger, move: Move) -> None:
    """Move the class's first round(fraction x n) drawn images (seeded order) from train to test."""
    if len(drawn) < 2:
        raise UserError(
            f"class {label!r} has {len(drawn)} usable image(s): a train/test split needs at least 2 per class: "
            f"add images or remove the class"
        )
    held = min(max(round(fraction * len(drawn)), 1), len(drawn) - 1)
    for start in range(drawn[0], drawn[0] + held, CHUNK):  # in chunks: a class may hold a million
        for id_, row in ledger.rows_between(start, min(start + CHUNK, drawn[0] + held) - 1):
            ledger.replace_row(id_, move(row, "test"))
