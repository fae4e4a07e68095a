"""`python -m imgclf pack`: a folder's files in content-defined TFRecord shards, read back as data.path."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import tensorflow as tf

from imgclf import cli
from imgclf.data import shards, snapshot
from imgclf.errors import UserError

from helpers.archive_builders import corrupt_member, write_zip
from helpers.workspace import pattern_image

SHARD_MB = 0.02  # ~20 files a shard here: many shards from a few hundred small images


def image(label: int, index: int, side: int = 16) -> bytes:
    buffer = io.BytesIO()
    pattern_image(label, index, (side, side), rgb=True).save(buffer, format="PNG")
    return buffer.getvalue()


def folder_of_images(root: Path, per_class: int = 150) -> Path:
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            (root / name / f"{index:04d}.png").write_bytes(image(label, index))
    (root / ".DS_Store").write_bytes(b"\0")  # hidden: not part of the data
    return root


def pack(folder: Path, out: Path) -> shards.Outcome:
    members, _ = snapshot.members("folder", str(folder))
    return shards.pack(members, out, SHARD_MB)


def files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def inodes(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_ino for path in folder.glob("shard-*.tfrecord")}


def test_the_same_folder_gives_the_same_shard_bytes_readable_by_tf_data(tmp_path):
    folder = folder_of_images(tmp_path / "images")
    first, second = pack(folder, tmp_path / "a"), pack(folder, tmp_path / "b")

    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert first.files == 300 and first.shards == len(inodes(tmp_path / "a")) and first.shards > 5
    assert first.written == first.shards and second == first
    index = list(shards.entries(tmp_path / "a"))
    assert [entry.path for entry in index] == sorted(f"{name}/{i:04d}.png" for name in ("cat", "dog") for i in range(150))
    # TensorFlow reads the shards natively: in index order, the records are the files' bytes.
    ordered_shards = list(dict.fromkeys(entry.shard for entry in index))
    records = [record.numpy() for record in tf.data.TFRecordDataset([str(tmp_path / "a" / name) for name in ordered_shards])]
    assert records == [(folder / entry.path).read_bytes() for entry in index]
    info = json.loads((tmp_path / "a" / shards.INFO).read_text())
    assert info["files"] == 300 and info["bytes"] == sum((folder / entry.path).stat().st_size for entry in index)
    assert info["shards"] == ordered_shards  # each beside its index, shard-<hash>.csv
    assert sorted(path.name for path in (tmp_path / "a").glob("*.csv")) == sorted(name.replace(".tfrecord", ".csv")
                                                                                for name in ordered_shards)


def test_a_folder_streams_its_files_in_path_order_whatever_their_names(tmp_path):
    """The snapshot walks a folder without listing it whole: a folder must sort where its paths do
    (`cat-1/x` before `cat/x`, `cat.b` before `cat/`), or packs and zips would come out in another order."""
    names = ["cat/x.png", "cat-1/x.png", "cat.b", "cat/y/z.png", "cat0/a.png", "cat/y.png", "a b/c.png", "ä/1.png"]
    for name in names:
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(name.encode())
    found, _ = snapshot.members("folder", str(tmp_path / "in"))
    assert [member.name for member in found] == sorted(names) and len(found) == len(names)
    shards.pack(found, tmp_path / "pack")
    assert [entry.path for entry in shards.entries(tmp_path / "pack")] == sorted(names)
    with pytest.raises(ValueError, match="out of path order"):
        shards.pack(list(reversed(list(found))), tmp_path / "other")
    assert not list(tmp_path.glob("*other*"))  # nothing half-written left behind


def test_each_file_is_read_once_and_packed_as_it_was_hashed(tmp_path):
    """A file read twice could differ the second time (still being written): the pack reads each file once,
    so its index always tells its shard's bytes."""
    reads = []

    def changing() -> bytes:
        reads.append(1)
        return b"first" if len(reads) == 1 else b"later"

    sources = [snapshot.Member("a/1.bin", 5, changing), snapshot.Member("a/2.bin", 3, lambda: b"two")]
    shards.pack(sources, tmp_path / "pack")
    reader = shards.Reader(tmp_path / "pack")
    assert [reader.read(entry) for entry in shards.entries(tmp_path / "pack")] == [b"first", b"two"]
    assert len(reads) == 1


def test_a_name_held_twice_is_packed_once_and_reported(tmp_path):
    """A tar appended to (`tar -r`) can hold a name twice: the first is packed, the second reported, no crash."""
    sources = [snapshot.Member("a/1.bin", 3, lambda: b"one"), snapshot.Member("a/1.bin", 5, lambda: b"later"),
               snapshot.Member("a/2.bin", 3, lambda: b"two")]
    done = shards.pack(sources, tmp_path / "pack")
    assert done.files == 2 and done.skipped == [("a/1.bin", "held twice in the input: the first one packed")]
    reader = shards.Reader(tmp_path / "pack")
    assert [reader.read(entry) for entry in shards.entries(tmp_path / "pack")] == [b"one", b"two"]


def test_one_changed_image_rewrites_only_the_shard_that_holds_it(tmp_path):
    folder = folder_of_images(tmp_path / "images")
    out = tmp_path / "pack"
    pack(folder, out)
    before = inodes(out)
    by_path = {entry.path: entry.shard for entry in shards.entries(out)}

    (folder / "cat" / "0042.png").write_bytes(image(1, 999))  # edited
    done = pack(folder, out)
    after = inodes(out)
    assert done.written == 1 and set(after) - set(before) and len(set(before) - set(after)) == 1
    assert set(before) - set(after) == {by_path["cat/0042.png"]}  # the one shard that held it
    assert all(after[name] == before[name] for name in set(before) & set(after))  # hard-linked, not rewritten
    assert done.written_bytes < done.bytes / 5  # one shard and its index: what DVC pushes besides pack.json

    (folder / "dog" / "0007.png").unlink()
    (folder / "dog" / "0007b.png").write_bytes(image(1, 1007))  # removed and added: at most their shards change
    again = pack(folder, out)
    assert 1 <= again.written <= 3 and len(set(inodes(out)) - set(after)) == again.written
    assert again.files == 300


def test_packing_again_mends_a_damaged_index_instead_of_keeping_it(tmp_path):
    folder = folder_of_images(tmp_path / "images", per_class=20)
    pack(folder, tmp_path / "fresh")
    pack(folder, tmp_path / "pack")
    index = next((tmp_path / "pack").glob("shard-*.csv"))
    lines = index.read_text().splitlines()
    index.write_text("\n".join([lines[0], lines[1].replace(",", ";"), *lines[2:]]) + "\n")  # its shard intact
    with pytest.raises(UserError, match="line 2 is damaged: pack the original folder again"):
        list(snapshot.members("folder", str(tmp_path / "pack"))[0])
    done = pack(folder, tmp_path / "pack")  # what the error says to do
    assert done.written == 1 and files(tmp_path / "pack") == files(tmp_path / "fresh")


def test_a_pack_is_a_data_path_that_snapshots_to_the_same_bytes_as_its_folder(tmp_path):
    folder = folder_of_images(tmp_path / "images")
    pack(folder, tmp_path / "pack")
    for name, source in (("from-folder", folder), ("from-pack", tmp_path / "pack")):
        (tmp_path / name).mkdir()
        summary = snapshot.snapshot("folder", str(source), tmp_path / name, 1 << 20)
        assert summary == {"files": 300, "skipped": [], "storage": "folders"}
    assert (tmp_path / "from-folder" / "images.zip").read_bytes() == (tmp_path / "from-pack" / "images.zip").read_bytes()

    entry = next(entry for entry in shards.entries(tmp_path / "pack") if entry.path == "dog/0100.png")
    shard = tmp_path / "pack" / entry.shard
    damaged = bytearray(shard.read_bytes())
    damaged[entry.offset + 30] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    (tmp_path / "damaged").mkdir()
    summary = snapshot.snapshot("folder", str(tmp_path / "pack"), tmp_path / "damaged", 1 << 20)
    assert summary["files"] == 299
    [(name, reason)] = summary["skipped"]
    assert name == "dog/0100.png" and "damaged in shard-" in reason
    with zipfile.ZipFile(tmp_path / "damaged" / "images.zip") as opened:
        assert "dog/0100.png" not in opened.namelist() and len(opened.namelist()) == 299


def test_inspect_sees_a_pack_as_it_sees_its_folder(tmp_path, workspace, capsys):
    folder = folder_of_images(tmp_path / "images", per_class=20)
    (folder / "dog" / "notes.png").write_text("not an image")
    (folder / "dog" / "again.png").write_bytes((folder / "cat" / "0003.png").read_bytes())
    pack(folder, tmp_path / "pack")
    found = []
    for target in (folder, tmp_path / "pack"):
        with pytest.raises(SystemExit) as done:
            cli.main(["inspect", str(target), "--format", "json"])
        assert done.value.code == 0
        found.append(json.loads(capsys.readouterr().out))
    folder_findings, pack_findings = ({key: value for key, value in findings.items() if key not in ("path", "command")}
                                      for findings in found)
    assert folder_findings == pack_findings
    assert pack_findings["not_images"] == ["dog/notes.png"] and pack_findings["classes"] == {"cat": 20, "dog": 21}
    assert pack_findings["duplicates_across_classes"] == [["cat/0003.png", "dog/again.png"]]
    assert found[1]["command"] == found[0]["command"].replace(str(folder), str(tmp_path / "pack"))


def _digest(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def test_a_killed_pack_leaves_the_previous_pack_and_nothing_half_written(tmp_path):
    folder = folder_of_images(tmp_path / "images")
    out = tmp_path / "pack"
    pack(folder, out)
    before = _digest(out)
    for index in range(150):
        (folder / "cat" / f"{index:04d}.png").write_bytes(image(1, 500 + index))
    with open(folder / "dog" / "zzzz.png", "wb") as last:  # read last: 512 MiB (sparse) keep the pack busy
        last.truncate(512 << 20)  # for a second or more after its first shards are written

    command = [sys.executable, "-m", "imgclf", "pack", str(folder), str(out), "--shard-mb", str(SHARD_MB)]
    packing = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(len(list(temp.glob("shard-*"))) > 3 for temp in tmp_path.glob(".pack.tmp-*")):
            assert packing.poll() is None and time.monotonic() < deadline, "the pack never got under way"
            time.sleep(0.05)
        packing.send_signal(signal.SIGKILL)
    finally:
        packing.wait()
    assert _digest(out) == before  # the previous pack, whole, still in place
    assert list(tmp_path.glob(".pack.tmp-*"))  # the killed pack's folder, beside it (not inside what DVC tracks)

    (folder / "dog" / "zzzz.png").unlink()
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(tmp_path.glob(".pack.*")) and _digest(out) != before
    assert [entry.path for entry in shards.entries(out)][:3] == ["cat/0000.png", "cat/0001.png", "cat/0002.png"]


def test_a_corrupt_member_of_an_archive_is_skipped_and_reported_not_fatal(tmp_path):
    archive = write_zip(tmp_path / "images.zip", {f"cat/{i}.png": image(0, i) for i in range(4)}
                        | {f"dog/{i}.png": image(1, i) for i in range(4)}, compression=zipfile.ZIP_STORED)
    corrupt_member(archive, "dog/2.png")
    done = subprocess.run([sys.executable, "-m", "imgclf", "pack", str(archive), str(tmp_path / "pack")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "7 files" in done.stdout and "1 file(s) skipped" in done.stdout
    assert "skipped dog/2.png: unreadable (Bad CRC-32" in done.stdout
    assert [entry.path for entry in shards.entries(tmp_path / "pack")] == \
        [f"cat/{i}.png" for i in range(4)] + [f"dog/{i}.png" for i in (0, 1, 3)]


def test_a_pipe_in_the_folder_is_skipped_and_reported_not_waited_on(tmp_path):
    folder = folder_of_images(tmp_path / "images", per_class=3)
    os.mkfifo(folder / "cat" / "0001b.png")  # nothing ever writes to it: reading it would block forever

    def hung(*_):
        raise TimeoutError("reading the folder blocked on the pipe")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        done = pack(folder, tmp_path / "pack")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert done.files == 6 and [name for name, _ in done.skipped] == ["cat/0001b.png"]
    assert "not a regular file" in done.skipped[0][1]


def test_pack_refuses_what_it_must_not_touch_in_one_line(tmp_path):
    folder = folder_of_images(tmp_path / "images", per_class=5)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    cases = {
        "inside": ([str(folder), str(folder / "packed")], "OUT must be outside FOLDER"),
        "not a pack": ([str(folder), str(tmp_path / "mine")], "exists and is not a pack"),
        "size": ([str(folder), str(tmp_path / "p"), "--shard-mb", "0"], "--shard-mb = 0.0"),
        "endless": ([str(folder), str(tmp_path / "p"), "--shard-mb", "inf"], "--shard-mb = inf"),
        "missing": ([str(tmp_path / "nowhere"), str(tmp_path / "p")], "no such folder"),
    }
    for name, (argv, message) in cases.items():
        done = subprocess.run([sys.executable, "-m", "imgclf", "pack", *argv], capture_output=True, text=True)
        lines = [line for line in done.stderr.splitlines() if line.startswith("imgclf:")]
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], (name, done.stderr[-800:])
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me" and not (tmp_path / "p").exists()


def test_an_index_naming_a_file_outside_the_pack_refuses_the_whole_pack(tmp_path):
    folder = folder_of_images(tmp_path / "images", per_class=5)
    pack(folder, tmp_path / "pack")
    info_file = tmp_path / "pack" / shards.INFO
    info = json.loads(info_file.read_text())
    index = tmp_path / "pack" / info["shards"][0].replace(".tfrecord", ".csv")
    lines = index.read_text().splitlines()
    path, size, digest, offset = lines[1].split(",")
    index.write_text("\n".join([lines[0], f"../{path},{size},{digest},{offset}", *lines[2:]]) + "\n")
    with pytest.raises(UserError, match=r"names '\.\./.*', outside the pack: refusing the whole pack"):
        list(snapshot.members("folder", str(tmp_path / "pack"))[0])
    info_file.write_text(json.dumps(info | {"shards": ["../../etc/passwd", *info["shards"][1:]]}))
    with pytest.raises(UserError, match="names files outside the pack: refusing the whole pack"):
        list(snapshot.members("folder", str(tmp_path / "pack"))[0])


def test_the_reader_reads_right_from_many_threads_with_more_shards_than_it_keeps_open(tmp_path, monkeypatch):
    """tf.data reads a sharded split from several threads; closing a shard under another's read gave wrong bytes."""
    from concurrent.futures import ThreadPoolExecutor

    files = {f"c/{index:03d}.bin": bytes([index % 251]) * (100 + index) for index in range(200)}
    folder = tmp_path / "in"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    shards.pack(snapshot.members("folder", str(folder))[0], tmp_path / "pack", shard_mb=0.002)
    entries = list(shards.entries(tmp_path / "pack"))
    assert len({entry.shard for entry in entries}) > 8
    monkeypatch.setattr(shards.Reader, "MAX_OPEN", 2)  # evictions on almost every read
    reader = shards.Reader(tmp_path / "pack")
    order = [entries[(index * 37) % len(entries)] for index in range(4000)]
    with ThreadPoolExecutor(8) as pool:
        read = list(pool.map(lambda entry: reader.read_unchecked(entry.shard, entry.offset, entry.size), order))
    assert read == [files[entry.path] for entry in order]
