"""The split's working tables, on disk: candidates, the digests drawn, the rows written.

A split of a million images must not hold a million of anything in memory, so what it keeps per image
lies in a SQLite file beside its output (created in the split's temp folder, deleted before that folder
becomes data/split, so DVC never sees it): the candidates of each class in name order (looked up by
position as the seeded draw visits them), the sha256 of every image drawn (a duplicate is found by
lookup) and the manifest rows (written out sorted by SQLite, which sorts on disk when it must).
Its page cache is bounded (CACHE_MIB), so the split's memory stays flat in the number of images.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

CACHE_MIB = 16
BATCH = 1000  # rows inserted at a time, candidates looked up at a time

SCHEMA = """
CREATE TABLE candidates (pool INTEGER, class TEXT, position INTEGER, name TEXT, filename TEXT, size INTEGER,
                         extras TEXT, shard TEXT, offset INTEGER, sha256 TEXT,
                         PRIMARY KEY (pool, class, position)) WITHOUT ROWID;
CREATE TABLE digests (digest BLOB PRIMARY KEY, name TEXT) WITHOUT ROWID;
CREATE TABLE rows (id INTEGER PRIMARY KEY, split TEXT, class TEXT, path TEXT, pending TEXT, data TEXT);
CREATE TABLE pending (key TEXT PRIMARY KEY) WITHOUT ROWID;
"""


class Ledger:
    """One split's tables in the SQLite file `path` (a new file; `close` deletes it)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE",
                       f"cache_size = -{CACHE_MIB * 1024}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)
        self._db.execute("BEGIN")
        self._rows = 0  # ids given
        self._waiting: list[tuple] = []  # rows not inserted yet

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)

    # Candidates: what the draw may take, per pool and class, in name order.

    def add_candidates(self, rows: Iterable[tuple]) -> None:
        """(pool, class, position, name, filename, size, extras dict, shard, offset, sha256) tuples."""
        self._db.executemany(
            "INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((*row[:6], json.dumps(row[6]) if row[6] else None, *row[7:]) for row in rows),
        )

    def candidates(self, pool: int, label: str, positions: list[int]) -> list[tuple]:
        """(name, filename, size, extras dict, shard, offset, sha256) of the class's candidates at `positions`,
        in that order (one query for them all)."""
        found = {row[0]: row[1:] for row in self._db.execute(
            "SELECT position, name, filename, size, extras, shard, offset, sha256 FROM candidates "
            "WHERE pool = ? AND class = ? AND position IN (SELECT value FROM json_each(?))",
            (pool, label, json.dumps(positions)))}
        if len(found) != len(set(positions)):
            raise IndexError(sorted(set(positions) - set(found))[0])
        return [(name, filename, size, json.loads(extras) if extras else {}, *where)
                for name, filename, size, extras, *where in map(found.__getitem__, positions)]

    # Digests: the sha256 of every image drawn, and the first file that had it.

    def first_with(self, digest: bytes, name: str) -> str | None:
        """Note that `name` has these bytes (their sha256); None, or the file noted with them before."""
        if self._db.execute("INSERT OR IGNORE INTO digests VALUES (?, ?)", (digest, name)).rowcount == 1:
            return None
        return self._db.execute("SELECT name FROM digests WHERE digest = ?", (digest,)).fetchone()[0]

    def forget(self, digest: bytes) -> None:
        """The file just noted with `digest` was not drawn after all (its check failed)."""
        self._db.execute("DELETE FROM digests WHERE digest = ?", (digest,))

    # Rows: the manifest, one row per image written.

    def add_row(self, row: dict, pending: str | None = None) -> int:
        """Store a manifest row (`pending`: the key of bytes still to be packed); its id, in write order.
        Rows are inserted a batch at a time; reading them inserts those waiting first."""
        self._rows += 1
        self._waiting.append((self._rows, row["split"], row["class"], row["path"], pending, json.dumps(row)))
        if len(self._waiting) >= BATCH:
            self._insert_waiting()
        return self._rows

    def _insert_waiting(self) -> None:
        self._db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?)", self._waiting)
        self._waiting.clear()

    def rows_between(self, first: int, last: int) -> list[tuple[int, dict]]:
        self._insert_waiting()
        return [(id_, json.loads(data)) for id_, data in
                self._db.execute("SELECT id, data FROM rows WHERE id BETWEEN ? AND ? ORDER BY id", (first, last))]

    def replace_row(self, id_: int, row: dict) -> None:
        self._db.execute("UPDATE rows SET split = ?, class = ?, path = ?, data = ? WHERE id = ?",
                         (row["split"], row["class"], row["path"], json.dumps(row), id_))

    def rows(self) -> Iterator[dict]:
        """Every row, sorted by split, class and path (the manifest's order; two rows of one path, in write order)."""
        self._insert_waiting()
        for (data,) in self._db.execute("SELECT data FROM rows ORDER BY split, class, path, id"):
            yield json.loads(data)

    def counts(self) -> list[tuple[str, str, int]]:
        """(split, class, images) for each split and class with images."""
        self._insert_waiting()
        return self._db.execute("SELECT split, class, COUNT(*) FROM rows GROUP BY split, class").fetchall()

    # Pending: bytes kept aside for the split's own pack, by key; their rows point at them once packed.

    def add_pending(self, key: str) -> bool:
        """Note a key; False when it was already noted (the same bytes under the same suffix)."""
        return self._db.execute("INSERT OR IGNORE INTO pending VALUES (?)", (key,)).rowcount == 1

    def pending_keys(self) -> Iterator[str]:
        """The keys, in order (what the pack sorts by)."""
        self._insert_waiting()
        self._db.execute("CREATE INDEX IF NOT EXISTS rows_pending ON rows (pending)")
        for (key,) in self._db.execute("SELECT key FROM pending ORDER BY key"):
            yield key

    def point(self, key: str, where: dict) -> None:
        """The rows waiting for `key`'s bytes now point at where the pack put them (shard, offset, size)."""
        for id_, data in self._db.execute("SELECT id, data FROM rows WHERE pending = ?", (key,)).fetchall():
            self._db.execute("UPDATE rows SET pending = NULL, data = ? WHERE id = ?",
                             (json.dumps(json.loads(data) | where), id_))
