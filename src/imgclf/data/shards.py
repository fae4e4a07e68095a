"""Packed images: a folder's files in a few large shards, each with its index, for sets of a million files.

`python -m imgclf pack FOLDER OUT` writes OUT/ with
  - pack.json: what this is (format, version), the boundary modulus, files, bytes, and the shards in order;
  - shard-<16 hex>.tfrecord: TFRecord files (tf.data.TFRecordDataset reads them) whose records are the
    files' bytes, in path order;
  - shard-<16 hex>.csv beside each: its files' path, size, sha256 and offset (where the bytes start).

Shard boundaries are content-defined: a shard ends after a file whose path hashes to 0 modulo
`modulus` (a power of two chosen from --shard-mb by the first pack, kept by later ones), so adding,
removing or editing one file changes only the shard that holds it: the other shards and their indexes
keep their bytes and their names (named by what they hold), and DVC pushes that one shard, its index
and pack.json. The same files always give the same bytes. The new pack is written beside OUT and
replaces it in one rename, its unchanged shards hard-linked from the old pack rather than copied: a
killed pack leaves OUT as it was.

A packed folder is a data.path like any folder: imgclf.data.snapshot reads its files back through the
indexes, each checked against its sha256 (a damaged one is skipped and reported, as an unreadable file
is). DVC then stats a few shards instead of every image on each `dvc status`. With data.storage shards
the pipeline keeps its own copy in this format too (data/raw/pack; imgclf.data.split, imgclf.data.listing).
"""

from __future__ import annotations

import csv
import filecmp
import hashlib
import json
import math
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from imgclf import atomic
from imgclf.data.archive import READ_ERRORS
from imgclf.errors import UserError

FORMAT = "imgclf-pack"
VERSION = 1
INFO = "pack.json"
INDEX_COLUMNS = ["path", "size", "sha256", "offset"]  # each shard's <name>.csv
RECORD_HEADER = 12  # TFRecord framing: uint64 length + uint32 CRC before the data, uint32 CRC after
RECORD_FOOTER = 4
DEFAULT_SHARD_MB = 128
SHARD_NAME = re.compile(r"shard-[0-9a-f]{16}\.tfrecord")


@dataclass(frozen=True)
class Entry:
    """One file of a pack: its path (relative, POSIX), size, sha256, and where its bytes are."""

    path: str
    size: int
    sha256: str
    shard: str
    offset: int


def is_pack(folder: Path) -> bool:
    """A folder written by `pack` (its pack.json says so): what the data is, not what it is called."""
    info = Path(folder) / INFO
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_info(folder: Path) -> dict:
    info = json.loads((Path(folder) / INFO).read_text(encoding="utf-8"))
    if info.get("version") != VERSION:
        raise UserError(f"{folder}: packed by another imgclf (pack version {info.get('version')}, this one reads "
                        f"{VERSION}): pack the original folder again with `python -m imgclf pack`")
    return info


def entries(folder: Path) -> Iterator[Entry]:
    """The pack's files, in path order, streamed shard by shard (memory flat in the number of files)."""
    folder = Path(folder)
    names = read_info(folder).get("shards")
    if not isinstance(names, list) or not all(isinstance(name, str) and SHARD_NAME.fullmatch(name) for name in names):
        raise UserError(f"{folder / INFO}: its shards list is damaged or names files outside the pack: refusing the "
                        f"whole pack; pack the original folder again")
    for shard in names:
        index = folder / _index_name(shard)
        try:
            stream = open(index, newline="", encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"{index}: missing from the pack: pack the original folder again") from None
        with stream:
            reader = csv.reader(stream)
            if next(reader, None) != INDEX_COLUMNS:
                raise UserError(f"{index}: not a shard index (columns {', '.join(INDEX_COLUMNS)}): "
                                f"pack the original folder again")
            for line, row in enumerate(reader, start=2):
                try:
                    path, size, sha256, offset = row
                    entry = Entry(path, int(size), sha256, shard, int(offset))
                except ValueError:
                    raise UserError(f"{index}: line {line} is damaged: pack the original folder again") from None
                if not path or path.startswith("/") or ".." in path.split("/"):
                    raise UserError(f"{index}: line {line} names {path!r}, outside the pack: refusing the whole pack")
                yield entry


def _index_name(shard: str) -> str:
    return shard.removesuffix(".tfrecord") + ".csv"


class Reader:
    """Reads files' bytes out of a pack's shards, checking each against its sha256.

    Shards stay open once read (at most `MAX_OPEN`, the least recently used closed first), so files may be
    read in any order: index order for the snapshot, the split's draw, or a training stage's shuffle.
    Safe across threads (tf.data reads in several): a shard is not closed while another thread reads it."""

    MAX_OPEN = 64

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._open: dict[str, int] = {}  # shard name -> descriptor, most recently used last
        self._lock = threading.Lock()

    def read(self, entry: Entry) -> bytes:
        """The file's bytes; OSError (which the snapshot reports as a skip) when missing or damaged."""
        data = self.read_unchecked(entry.shard, entry.offset, entry.size)
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise OSError(f"damaged in {entry.shard}: its bytes do not match the index's sha256")
        return data

    def read_unchecked(self, shard: str, offset: int, size: int) -> bytes:
        """`size` bytes at `offset` of `shard` (a name in the folder), as stored."""
        with self._lock:
            descriptor = self._open.pop(shard, None)
            if descriptor is None:
                if len(self._open) >= self.MAX_OPEN:
                    os.close(self._open.pop(next(iter(self._open))))
                descriptor = os.open(self.folder / shard, os.O_RDONLY)
            self._open[shard] = descriptor
            return os.pread(descriptor, size, offset)

    def close(self) -> None:
        with self._lock:
            while self._open:
                os.close(self._open.popitem()[1])

    __del__ = close  # once no member needs the reader


# How a sharded split's manifest names a shard: "raw:<16 hex>" (data/raw/pack) or "split:<16 hex>" (data/split/pack).
REFERENCE = re.compile(r"(raw|split):([0-9a-f]{16})")
REFERENCE_FOLDERS = {"raw": "../raw/pack", "split": "pack"}  # relative to data/split


def reference(where: str, shard: str) -> str:
    """The manifest's short name for `shard` (a shard file's name) of the pack `where` (raw or split)."""
    if not SHARD_NAME.fullmatch(shard):
        raise ValueError(f"not a shard's name: {shard!r}")
    return f"{where}:{shard[len('shard-'):-len('.tfrecord')]}"


def referenced_path(value: str) -> str | None:
    """The shard file a manifest reference names, relative to data/split; None if it is not a reference."""
    found = REFERENCE.fullmatch(value)
    return f"{REFERENCE_FOLDERS[found.group(1)]}/shard-{found.group(2)}.tfrecord" if found else None


def storage_for(setting: str, images: int, threshold: int) -> str:
    """data.storage resolved: `folders` or `shards` (auto: shards above data.shards_from images)."""
    if setting != "auto":
        return setting
    return "shards" if images > threshold else "folders"


def boundary(path: str, modulus: int) -> bool:
    """Whether a shard ends after the file at `path`: decided by the path alone, so shards are local."""
    return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:8], "big") % modulus == 0


def modulus_for(total_bytes: int, files: int, shard_mb: float) -> int:
    """Files per shard on average, a power of two (so a few more or fewer files rarely change it)."""
    if not files:
        return 1
    wanted = shard_mb * 1024 * 1024 / max(1.0, total_bytes / files)
    return 1 << max(0, round(math.log2(max(1.0, wanted))))


class Source(Protocol):
    """One file to pack (imgclf.data.snapshot.Member): its path relative to the folder, size, and reader."""

    name: str
    size: int
    read: Callable[[], bytes]


@dataclass(frozen=True)
class Outcome:
    files: int
    bytes: int
    shards: int
    written: int  # shards written by this pack; the others were unchanged and linked from the old pack
    written_bytes: int  # those shards and their indexes: what DVC stores and pushes anew
    skipped: list[tuple[str, str]]


def pack(sources: Iterable[Source], target: Path, shard_mb: float = DEFAULT_SHARD_MB,
         progress: Callable[[int], None] | None = None, reuse: Path | None = None) -> Outcome:
    """Write (or update) the pack at `target` from `sources`; a file that cannot be read is skipped and listed.

    `sources` come in path order, each file read once and written as it comes into the shard being filled
    (a temporary file, named by what it holds once full); a new pack passes over them once more before, for
    their sizes, to choose its modulus (a list, or a listing that streams them again:
    imgclf.data.snapshot.Files). So nothing is held per file, whatever a shard's size. A shard already in
    the old pack at `target`, or in the pack `reuse` (the pack the sources come from), is hard-linked from
    there instead of the one just written."""
    if iter(sources) is sources:
        raise TypeError("pack: sources must be a list or a listing that can be passed over again, not an iterator")

    target = Path(target)
    previous = target if is_pack(target) else None
    if previous is None and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target}: exists and is not a pack: give a new or empty folder (a pack never replaces "
                        f"other files)")
    basis = previous or reuse  # whose boundaries to keep: the old pack's, else those of the pack copied from
    old_info = read_info(basis) if basis else {}
    if basis is not None and basis == reuse:
        shard_mb = old_info.get("shard_mb", shard_mb)
    if "modulus" in old_info and old_info.get("shard_mb") == shard_mb:
        modulus = int(old_info["modulus"])
    else:
        sizes = [0, 0]  # files, bytes
        for source in sources:
            sizes[0] += 1
            sizes[1] += source.size
        modulus = modulus_for(sizes[1], sizes[0], shard_mb)
    old_shards = {path.name: folder for folder in (reuse, previous) if folder is not None
                  for path in Path(folder).glob("shard-*.tfrecord")}
    skipped: list[tuple[str, str]] = []
    written = written_bytes = total = count = 0
    shards: list[str] = []
    with atomic.directory(target) as temp:
        filling = _Filling(temp)

        def flush() -> None:
            nonlocal filling, written, written_bytes
            if not filling.files:
                return
            name, length, index, shard = filling.finish()
            old = old_shards.get(name)
            if (old is not None and (old / name).stat().st_size == length  # unchanged: the old one's blocks
                    and _same_bytes(index, old / _index_name(name))):  # (a damaged old index: the new one)
                shard.unlink()
                index.unlink()
                _link_or_copy(old / name, temp / name)
                _link_or_copy(old / _index_name(name), temp / _index_name(name))
            else:
                os.replace(shard, temp / name)
                os.replace(index, temp / _index_name(name))
                written += 1
                written_bytes += length + (temp / _index_name(name)).stat().st_size
            shards.append(name)
            filling = _Filling(temp)

        last = ""
        for number, source in enumerate(sources, start=1):
            count = number
            if source.name == last:  # a name held twice (a tar appended to): the first is packed
                skipped.append((source.name, "held twice in the input: the first one packed"))
                continue
            if source.name < last:
                raise ValueError(f"pack: files out of path order ({last!r}, then {source.name!r})")
            last = source.name
            try:
                data = source.read()
            except READ_ERRORS as error:
                skipped.append((source.name, f"unreadable ({str(error)[:60]})"))
                continue
            filling.add(source.name, data)
            total += len(data)
            if boundary(source.name, modulus):
                flush()
            if progress and number % 10_000 == 0:
                progress(number)
        flush()
        for leftover in filling.finish()[2:]:
            leftover.unlink()
        files = count - len(skipped)
        info = {"format": FORMAT, "version": VERSION, "shard_mb": shard_mb, "modulus": modulus,
                "files": files, "bytes": total, "shards": shards}
        (temp / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Outcome(files, total, len(shards), written, written_bytes, skipped)


class _Filling:
    """The shard being filled: its files' records written as they come and its index rows, both in temp
    files, its name (by content) and length."""

    def __init__(self, folder: Path):
        import tensorflow as tf  # TFRecord framing (its CRC32C); only packing needs TensorFlow

        self.path, self.shard = folder / ".filling.csv", folder / ".filling.tfrecord"
        self._stream = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._stream, lineterminator="\n")
        self._writer.writerow(INDEX_COLUMNS)
        self._records = tf.io.TFRecordWriter(str(self.shard))
        self._content = hashlib.sha256()
        self.length = self.files = 0

    def add(self, path: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        self._records.write(data)
        self._writer.writerow([path, len(data), digest, self.length + RECORD_HEADER])
        self._content.update(f"{path}\0{digest}\n".encode())
        self.length += RECORD_HEADER + len(data) + RECORD_FOOTER
        self.files += 1

    def finish(self) -> tuple[str, int, Path, Path]:
        """(the shard's name, its length in bytes, its index file, its records file)."""
        self._stream.close()
        self._records.close()
        return f"shard-{self._content.hexdigest()[:16]}.tfrecord", self.length, self.path, self.shard


def _same_bytes(one: Path, other: Path) -> bool:
    try:
        return filecmp.cmp(one, other, shallow=False)
    except OSError:
        return False


def _link_or_copy(source: Path, target: Path) -> None:
    """An unchanged shard: the same blocks (a hard link) where the file system allows, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
