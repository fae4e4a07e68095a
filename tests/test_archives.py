"""dogs-vs-cats archives: Kaggle's train.zip and Microsoft's PetImages zip, read safely.

Happy paths through the real download + split functions, and the archive module's entry rules.
Every bad input at once lives in test_bad_inputs.py.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from imgclf import paths
from imgclf.data import archive, snapshot, sources, split
from imgclf.errors import UserError

from helpers.archive_builders import (
    corrupt_member,
    encode,
    encrypt_flag,
    good_jpeg,
    kaggle_files,
    petimages_files,
    real_photos,
    write_tar,
    write_zip,
)


def download(write_params, files: dict[str, bytes], tmp_path: Path, **overrides):
    zip_path = write_zip(tmp_path / "inputs" / "train.zip", files)
    config = write_params({"data.source": "dogs-vs-cats", "data.archive": str(zip_path),
                           "data.train_per_class": 3, "data.test_per_class": 2, **overrides})
    return config, sources.download(config), zip_path


def test_kaggle_train_zip(workspace, write_params, tmp_path) -> None:
    config, summary, zip_path = download(write_params, kaggle_files(cats=6, dogs=7), tmp_path)
    assert summary == {"source": "dogs-vs-cats", "file": "train.zip", "images": 13, "skipped_entries": 0,
                       "sha256": sources.sha256_file(zip_path)}
    assert paths.RAW_ARCHIVE.read_bytes() == zip_path.read_bytes()
    assert json.loads(paths.RAW_INFO.read_text()) == summary
    metrics = split.split(config)
    assert metrics["total"] == {"train": 6, "test": 4}
    table = pd.read_csv(paths.MANIFEST)
    assert all(Path(name).name.split(".")[0] == label for name, label in zip(table["path"], table["class"], strict=True))


def test_petimages_zip(workspace, write_params, tmp_path) -> None:
    config, summary, _ = download(write_params, petimages_files(cats=5, dogs=5), tmp_path)
    assert summary["images"] == 10 and summary["skipped_entries"] == 2  # the two Thumbs.db
    metrics = split.split(config)
    assert metrics["counts"]["train"] == {"cat": 3, "dog": 3}
    assert {item["file"] for item in metrics["skipped"]["files"]} == {
        "PetImages/Cat/Thumbs.db", "PetImages/Dog/Thumbs.db"}
    assert set(metrics["skipped"]["by_reason"]) == {"system file"}
    names = sorted(path.name for path in (paths.SPLIT / "train" / "cat").iterdir())
    assert all(name.startswith("cat.") and name.endswith(".jpg") for name in names)


def test_nested_prefix_is_accepted(workspace, write_params, tmp_path) -> None:
    files = {f"dogs-vs-cats/{name}": data for name, data in kaggle_files(cats=5, dogs=5).items()}
    config, summary, _ = download(write_params, files, tmp_path)
    assert summary["images"] == 10
    assert split.split(config)["total"] == {"train": 6, "test": 4}


def entries_of(tmp_path: Path, files: dict[str, bytes], **kwargs) -> archive.Listing:
    with zipfile.ZipFile(write_zip(tmp_path / "listing.zip", files, **kwargs)) as opened:
        return archive.list_entries(opened, "train.zip")


def test_listing_labels_filenames_and_skips(tmp_path) -> None:
    files = {
        "train/cat.1.jpg": b"a", "train/dog.2.jpg": b"b", "PetImages/Cat/3.jpg": b"c",
        "PetImages/Dog/4.jpg": b"d", "train/readme.txt": b"e", "train/Thumbs.db": b"f",
        "__MACOSX/train/._cat.1.jpg": b"g", "train/bird.5.jpg": b"h",
    }
    listing = entries_of(tmp_path, files)
    assert [(entry.name, entry.label, entry.filename) for entry in listing.entries] == [
        ("PetImages/Cat/3.jpg", "cat", "cat.3.jpg"), ("PetImages/Dog/4.jpg", "dog", "dog.4.jpg"),
        ("train/cat.1.jpg", "cat", "cat.1.jpg"), ("train/dog.2.jpg", "dog", "dog.2.jpg"),
    ]
    reasons = dict(listing.skipped)
    assert reasons["train/Thumbs.db"].startswith("system file")
    assert reasons["__MACOSX/train/._cat.1.jpg"].startswith("system file")
    assert reasons["train/readme.txt"].startswith("not a cat/dog image name")
    assert reasons["train/bird.5.jpg"].startswith("not a cat/dog image name")


def test_two_entries_with_one_split_name_keep_the_first(tmp_path) -> None:
    """train/cat.3.jpg and PetImages/Cat/3.jpg would both become cat.3.jpg and overwrite each other."""
    listing = entries_of(tmp_path, {"train/cat.3.jpg": b"kaggle", "PetImages/Cat/3.jpg": b"pet",
                                    "other/train/cat.3.jpg": b"again", "train/dog.1.jpg": b"d"})
    # Deterministic: the first entry by name wins, whatever order the zip stores them in.
    assert sorted((entry.filename, entry.name) for entry in listing.entries) == [
        ("cat.3.jpg", "PetImages/Cat/3.jpg"), ("dog.1.jpg", "train/dog.1.jpg")]
    duplicates = [(name, reason) for name, reason in listing.skipped if reason.startswith("duplicate")]
    assert len(duplicates) == 2
    assert all("cat.3.jpg" in reason for _, reason in duplicates)


@pytest.mark.parametrize("name, why", [
    ("../cat.1.jpg", "contains '..'"),
    ("train/../../cat.1.jpg", "contains '..'"),
    ("..\\..\\cat.1.jpg", "contains '..'"),
    ("/tmp/cat.1.jpg", "has an absolute path"),
    ("C:/Users/cat.1.jpg", "has an absolute path"),
])
def test_escaping_entries_refuse_the_archive(tmp_path, name: str, why: str) -> None:
    files = kaggle_files(cats=2, dogs=2) | {name: good_jpeg(1)}
    with pytest.raises(UserError) as caught:
        entries_of(tmp_path, files)
    assert str(caught.value) == (
        f"train.zip: entry {name!r} {why}: refusing the whole archive (it could write outside the "
        f"data folder); use an untampered train.zip"
    )


def test_symlink_entry_refuses_the_archive(tmp_path) -> None:
    with pytest.raises(UserError, match=r"entry 'train/cat\.9\.jpg' is a symbolic link: refusing the whole archive"):
        entries_of(tmp_path, kaggle_files(cats=2, dogs=2), symlinks={"train/cat.9.jpg": "/etc/passwd"})


def test_archive_without_cats_or_dogs(tmp_path) -> None:
    with pytest.raises(UserError, match=r"train\.zip: no cat/dog images found: expected Kaggle's"):
        entries_of(tmp_path, {"images/0001.jpg": good_jpeg(0), "train/Thumbs.db": b"x"})


def read(tmp_path: Path, zip_path: Path, name: str, max_bytes: int = 1 << 24) -> tuple[bytes | None, str]:
    with zipfile.ZipFile(zip_path) as opened:
        listing = archive.list_entries(opened, "train.zip")
        entry = next(item for item in listing.entries if item.name == name)
        return archive.read_entry(opened, entry, max_bytes)


def test_read_entry_reports_broken_members(tmp_path) -> None:
    files = kaggle_files(cats=3, dogs=1)
    stored = write_zip(tmp_path / "stored.zip", files, compression=zipfile.ZIP_STORED)
    corrupt_member(stored, "train/cat.1.jpg")
    data, reason = read(tmp_path, stored, "train/cat.1.jpg")
    assert data is None and reason.startswith("unreadable in the archive (Bad CRC-32")
    deflated = write_zip(tmp_path / "deflated.zip", files)
    corrupt_member(deflated, "train/cat.2.jpg")
    data, reason = read(tmp_path, deflated, "train/cat.2.jpg")
    assert data is None and reason.startswith("unreadable in the archive")
    # Neighbours are unaffected.
    assert read(tmp_path, deflated, "train/cat.0.jpg") == (files["train/cat.0.jpg"], "")


def test_read_entry_skips_encrypted_members(tmp_path) -> None:
    """zipfile raises RuntimeError('password required') for these: it must be a counted skip."""
    zip_path = write_zip(tmp_path / "locked.zip", kaggle_files(cats=2, dogs=1))
    encrypt_flag(zip_path, "train/cat.1.jpg")
    assert read(tmp_path, zip_path, "train/cat.1.jpg") == (None, "encrypted in the archive (password-protected entry)")


def test_read_entry_refuses_oversized_members_before_reading(tmp_path) -> None:
    zip_path = write_zip(tmp_path / "big.zip", {"train/cat.1.jpg": b"\0" * 5000, "train/dog.1.jpg": b"x"})
    data, reason = read(tmp_path, zip_path, "train/cat.1.jpg", max_bytes=4096)
    assert data is None and reason == "too large to decode safely (5000 bytes)"


def test_relative_archive_path_resolves_in_the_main_workspace(workspace, write_params, tmp_path,
                                                              monkeypatch) -> None:
    """`dvc exp run --temp` runs in a copy of the repo: a relative data.archive must still resolve."""
    main = tmp_path / "main"
    write_zip(main / "downloads" / "train.zip", kaggle_files(cats=5, dogs=5))
    config = write_params({"data.source": "dogs-vs-cats", "data.archive": "downloads/train.zip"})
    monkeypatch.setenv("DVC_ROOT", str(main))
    assert sources.download(config)["images"] == 10
    monkeypatch.delenv("DVC_ROOT")
    with pytest.raises(UserError, match=r"^data\.archive = .*downloads/train\.zip: no such file"):
        sources.download(config)


def test_camera_jpeg_with_a_second_picture_is_a_jpeg(workspace, write_params, tmp_path) -> None:
    """Pillow opens multi-picture camera JPEGs as format 'MPO': they are JPEGs, not skips."""
    from PIL import Image

    mpo = encode(real_photos()[0], "MPO", save_all=True, append_images=[real_photos()[1]])
    assert Image.open(io.BytesIO(mpo)).format == "MPO"
    files = kaggle_files(cats=4, dogs=5) | {"train/cat.77.jpg": mpo}
    config, _, _ = download(write_params, files, tmp_path)
    metrics = split.split(config)
    assert metrics["skipped"]["count"] == 0
    assert (paths.SPLIT / "train" / "cat" / "cat.77.jpg").exists() or (
        paths.SPLIT / "test" / "cat" / "cat.77.jpg").exists()


@pytest.mark.parametrize("mode, suffix", [("w:gz", ".tgz"), ("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz")])
def test_a_compressed_tar_reads_as_its_plain_tar(tmp_path, mode: str, suffix: str) -> None:
    files = {f"{label}/{index:03d}.jpg": good_jpeg(index) for label in ("b", "a") for index in range(5)}
    for name, write_mode in (("plain.tar", "w"), (f"packed{suffix}", mode)):  # added out of path order
        write_tar(tmp_path / name, files, write_mode)

    def read(name: str) -> list[tuple[str, bytes]]:
        found, _ = snapshot.members("folder", str(tmp_path / name))
        return [(member.name, member.read()) for member in found]

    plain = read("plain.tar")
    assert [name for name, _ in plain] == sorted(files) and dict(plain) == files
    assert read(f"packed{suffix}") == plain  # decompressed once, read in path order


def test_a_truncated_tar_gz_is_refused(tmp_path) -> None:
    write_tar(tmp_path / "whole.tar.gz", {"a/1.jpg": good_jpeg(1) * 40}, "w:gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes((tmp_path / "whole.tar.gz").read_bytes()[:200])
    with pytest.raises(UserError, match=r"cut.tar.gz: not a readable tar archive"):
        snapshot.members("folder", str(cut))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device whose writes fail: disk full)")
def test_a_compressed_tar_with_no_room_to_decompress_says_where_and_what_to_do(tmp_path, monkeypatch) -> None:
    data = random.Random(0).randbytes(1 << 18)  # more than a write buffer, so the write itself fails
    write_tar(tmp_path / "big.tar.gz", {"a/1.jpg": data}, "w:gz")
    # the temporary file lands on a full disk: /dev/full answers every write with ENOSPC
    monkeypatch.setattr(snapshot.tempfile, "TemporaryFile", lambda **_: open("/dev/full", "w+b"))
    with pytest.raises(UserError, match=r"big.tar.gz: no room to decompress it in .*: free space there or set TMPDIR"):
        snapshot.members("folder", str(tmp_path / "big.tar.gz"))


def test_a_plain_tar_whose_first_name_starts_like_a_bzip2_header_stays_a_plain_tar(tmp_path) -> None:
    files = {"BZh9/cat/1.jpg": good_jpeg(1), "BZh9/dog/2.jpg": good_jpeg(2)}  # a tar begins with its first name
    write_tar(tmp_path / "plain.tar", files)
    found, _ = snapshot.members("folder", str(tmp_path / "plain.tar"))
    assert {member.name: member.read() for member in found} == files


def test_every_one_byte_damage_of_a_tar_gz_is_read_or_refused_in_one_line(tmp_path) -> None:
    write_tar(tmp_path / "whole.tar.gz", {"a/3.jpg": good_jpeg(3)}, "w:gz")
    whole = (tmp_path / "whole.tar.gz").read_bytes()
    refused = 0
    for at in range(len(whole)):  # some hit the deflate stream itself: zlib.error, not an OSError
        damaged = tmp_path / "damaged.tar.gz"
        damaged.write_bytes(whole[:at] + bytes([whole[at] ^ 0x55]) + whole[at + 1:])
        try:
            found, _ = snapshot.members("folder", str(damaged))
        except UserError as error:
            assert "damaged.tar.gz: not a readable tar archive" in str(error)
            refused += 1
        else:
            assert [member.name for member in found] == ["a/3.jpg"]  # header bytes gzip does not check
    assert refused > len(whole) / 2
