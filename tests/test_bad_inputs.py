"""The bad-input sweep: every bad params value and every bad archive the project knows, thrown at it.

Each must end as a clear one-line error or a counted skip, never in data/split, and nothing outside
the workspace's data/ and metrics/ may change (the MLflow store aside).
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
from PIL import Image

from imgclf import paths
from imgclf.data import sources, split
from imgclf.errors import UserError

from helpers.archive_builders import (
    BAD_FILES,
    JUNK,
    NON_RGB,
    bad_entry_name,
    corrupt_member,
    encrypt_flag,
    good_jpeg,
    kaggle_files,
    photo_jpeg,
    write_zip,
)
from helpers.bad_params import CASES as PARAMS_CASES
from helpers.workspace import stage_argv

GOOD_PER_CLASS = 8
QUOTA = {"data.test_per_class": 3, "data.train_per_class": 5}  # = GOOD_PER_CLASS: every good one is used
STORE = ("mlflow.db", "mlflow.db.lock", "mlartifacts")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root except data/, metrics/ and the MLflow store, with content hashes."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        # params.yaml is the test's own input (rewritten per seed); the stages only read it.
        if relative.parts[0] in ("data", "metrics", "params.yaml", *STORE):
            continue
        state[str(relative)] = "dir" if path.is_dir() else digest(path.read_bytes())
    return state


@pytest.fixture
def unchanged_outside_data(workspace: Path):
    """Asserts, after the test, that only data/ and metrics/ changed (call it once inputs exist)."""
    taken: dict[str, dict[str, str]] = {}

    def take() -> None:
        taken["before"] = snapshot(workspace)

    yield take
    assert "before" in taken, "the test never took its snapshot"
    assert snapshot(workspace) == taken["before"]


# --- params: every invalid kind, through stage.main (what every stage script calls) ---------


@pytest.mark.parametrize("text, pattern", [case[1:] for case in PARAMS_CASES],
                         ids=[case[0] for case in PARAMS_CASES])
def test_bad_params_stop_the_stage_with_one_line(workspace, capsys, unchanged_outside_data, run_stage_script,
                                                 text: str, pattern: str) -> None:
    import re

    (workspace / "params.yaml").write_text(text)
    unchanged_outside_data()
    with pytest.raises(SystemExit) as stopped:
        run_stage_script("split")
    assert stopped.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.fullmatch("imgclf: " + pattern, err[0]), err
    assert not (workspace / "mlflow.db").exists()  # stopped before opening an MLflow run
    assert not (workspace / "data").exists()


# --- archives: the archive file itself ---------------------------------------------------


def truncated_zip(path: Path) -> None:
    write_zip(path, kaggle_files(cats=3, dogs=3))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])


def tar_gz(path: Path) -> None:
    import tarfile

    source = path.with_suffix(".src")
    source.write_bytes(good_jpeg(0))
    with tarfile.open(path, "w:gz") as archive:
        archive.add(source, arcname="train/cat.0.jpg")
    source.unlink()


BAD_ARCHIVE_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (lambda path: None, r"data\.archive = {path}: no such file: set it to a dogs-vs-cats train\.zip or null"),
    "a-folder": (lambda path: path.mkdir(), r"data\.archive = {path}: no such file: .*"),
    "zero-bytes": (lambda path: path.write_bytes(b""), r"{path}: the archive is empty \(0 bytes\): download it again"),
    "garbage": (lambda path: path.write_bytes(b"\x13\x37" * 500),
                r"{path}: not a zip archive \(corrupt, truncated, or another format\): use Kaggle's .*"),
    "truncated": (truncated_zip, r"{path}: not a zip archive .*"),
    "jpeg-named-zip": (lambda path: path.write_bytes(good_jpeg(0)), r"{path}: not a zip archive .*"),
    "tar-gz": (tar_gz, r"{path}: not a zip archive .*"),
    "html-error-page": (lambda path: path.write_bytes(b"<html>Please sign in</html>"), r"{path}: not a zip archive .*"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ARCHIVE_FILES))
def test_bad_archive_file_is_a_clear_error(workspace, write_params, unchanged_outside_data, tmp_path, kind) -> None:
    import re

    make, pattern = BAD_ARCHIVE_FILES[kind]
    path = tmp_path / "inputs" / "train.zip"
    path.parent.mkdir()
    make(path)
    config = write_params({"data.source": "dogs-vs-cats", "data.archive": str(path)})
    unchanged_outside_data()
    with pytest.raises(UserError) as caught:
        sources.download(config)
    assert re.fullmatch(pattern.format(path=re.escape(str(path))), str(caught.value)), str(caught.value)
    assert not paths.RAW.exists()


# --- archives: entries that would escape ---------------------------------------------------

ESCAPES = {
    "dot-dot": "../escaped.jpg",
    "deep-dot-dot": "train/../../../escaped.jpg",
    "backslash-dot-dot": "..\\..\\escaped.jpg",
    "absolute": "{outside}/escaped-absolute.jpg",
    "drive-letter": "C:/escaped.jpg",
}


@pytest.mark.parametrize("kind", [*ESCAPES, "symlink"])
def test_escaping_entry_refuses_the_whole_archive(workspace, write_params, unchanged_outside_data,
                                                  tmp_path, kind) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    files = kaggle_files(cats=GOOD_PER_CLASS, dogs=GOOD_PER_CLASS)
    symlinks = {}
    if kind == "symlink":
        symlinks["train/cat.99.jpg"] = str(outside / "target.jpg")
        name = "train/cat.99.jpg"
    else:
        name = ESCAPES[kind].format(outside=outside)
        files[name] = photo_jpeg(5)
    zip_path = write_zip(tmp_path / "inputs" / "train.zip", files, symlinks=symlinks)
    config = write_params({"data.source": "dogs-vs-cats", "data.archive": str(zip_path), **QUOTA})
    unchanged_outside_data()
    with pytest.raises(UserError) as caught:
        sources.download(config)
    assert f"entry {name!r}" in str(caught.value)
    assert "refusing the whole archive" in str(caught.value)
    assert not paths.RAW.exists()
    assert sorted(path.name for path in outside.iterdir()) == []
    assert not (tmp_path.parent / "escaped.jpg").exists()


# --- archives: bad entries are counted skips ------------------------------------------------


@pytest.fixture
def archive_split(workspace, write_params, tmp_path):
    """Build an archive (good cats and dogs + extras), download it, and split it."""

    def run(extras: dict[str, bytes], *, take: Callable[[], None], damage: Callable[[Path], None] | None = None,
            seeds: range = range(1), until_examined: str | None = None, **overrides) -> dict:
        files = kaggle_files(cats=GOOD_PER_CLASS, dogs=GOOD_PER_CLASS) | extras
        zip_path = write_zip(tmp_path / "inputs" / "train.zip", files, compression=zipfile.ZIP_STORED)
        if damage:
            damage(zip_path)
        take()  # the inputs exist: from here on only data/ and metrics/ may change
        settings = {"data.source": "dogs-vs-cats", "data.archive": str(zip_path), **QUOTA, **overrides}
        sources.download(write_params(settings))
        for seed in seeds:
            metrics = split.split(write_params({**settings, "seed": seed}))
            examined = {item["file"] for item in metrics["skipped"]["files"]}
            if until_examined is None or until_examined in examined:
                return metrics
        pytest.fail(f"{until_examined} was never examined with seeds {seeds}")

    return run


def assert_not_in_split(bad_payloads: dict[str, bytes], *, check_names: bool = True) -> None:
    table = pd.read_csv(paths.MANIFEST)
    stored = {digest(path.read_bytes()) for path in paths.SPLIT.rglob("*.*") if path.name != "manifest.csv"}
    assert set(table["sha256"]) == stored
    for name, data in bad_payloads.items():
        assert digest(data) not in stored, name
        if check_names:
            assert Path(name).name not in {Path(path).name for path in table["path"]}, name
    assert len(table) == 2 * GOOD_PER_CLASS


# Per kind: (entry name, payload, damage to the zip, reason fragment, params overrides)
def entry_cases() -> list[tuple]:
    cases = [(bad.key, bad_entry_name(bad, 100 + number), bad.make(), None, bad.reason, {})
             for number, bad in enumerate(BAD_FILES)]
    for key, make, mode in NON_RGB:
        cases.append((f"{key}-skip", f"train/cat.{200 + len(cases)}.jpg", make(), None,
                      f"not RGB (mode {mode})", {"data.non_rgb": "skip"}))
    encrypted = "train/cat.300.jpg"
    cases.append(("encrypted", encrypted, good_jpeg(300), lambda path: encrypt_flag(path, encrypted),
                  "encrypted in the archive", {}))
    crc = "train/cat.301.jpg"
    cases.append(("bad-crc", crc, good_jpeg(301), lambda path: corrupt_member(path, crc),
                  "unreadable in the archive (Bad CRC-32", {}))
    cases.append(("duplicate-name", "train/sub/cat.0.jpg", good_jpeg(999), None,
                  "duplicate file name (cat.0.jpg, also train/cat.0.jpg)", {}))
    return cases


ENTRY_CASES = entry_cases()


def plain_bad_entries() -> dict[str, bytes]:
    """The bad entries that need no damage to the zip, no params change and keep their own name."""
    return {name: payload for _, name, payload, damage, reason, overrides in ENTRY_CASES
            if damage is None and not overrides and not reason.startswith("duplicate")}


@pytest.mark.parametrize("name, payload, damage, reason, overrides", [case[1:] for case in ENTRY_CASES],
                         ids=[case[0] for case in ENTRY_CASES])
def test_each_bad_entry_is_a_counted_skip(archive_split, unchanged_outside_data, name, payload, damage,
                                          reason, overrides) -> None:
    # The split examines candidates only until the quotas are filled, in seeded order: try seeds
    # until this entry was examined (all seeds must give the same verdict on it).
    metrics = archive_split({name: payload}, take=unchanged_outside_data, damage=damage, seeds=range(10), until_examined=name, **overrides)
    skipped = {item["file"]: item["reason"] for item in metrics["skipped"]["files"]}
    assert set(skipped) == {name}
    assert reason in skipped[name], skipped
    assert metrics["skipped"]["count"] == 1
    assert metrics["skipped"]["by_reason"] == {skipped[name].split(" (")[0]: 1}
    assert metrics["total"] == {"train": 2 * QUOTA["data.train_per_class"], "test": 2 * QUOTA["data.test_per_class"]}
    # A duplicate's name is taken by the entry it duplicates: only its bytes must be absent.
    assert_not_in_split({name: payload}, check_names=not reason.startswith("duplicate"))


def test_everything_at_once(archive_split, unchanged_outside_data) -> None:
    extras = plain_bad_entries() | JUNK
    metrics = archive_split(extras, take=unchanged_outside_data)
    expected = {name: reason for _, name, _, damage, reason, overrides in ENTRY_CASES
                if damage is None and not overrides}
    skipped = {item["file"]: item["reason"] for item in metrics["skipped"]["files"]}
    # Junk is skipped while listing, always; bad images when the split examines them.
    assert set(JUNK) <= set(skipped)
    for name, reason in skipped.items():
        assert name in JUNK or reason.startswith(expected[name].split(" (")[0]), (name, reason)
    assert metrics["skipped"]["count"] == len(skipped) == sum(metrics["skipped"]["by_reason"].values())
    assert_not_in_split(extras)


def test_grayscale_and_cmyk_are_converted_by_default(archive_split, unchanged_outside_data) -> None:
    (_, grayscale, _), (_, cmyk, _) = NON_RGB
    extras = {"train/cat.500.jpg": grayscale(), "train/dog.501.jpg": cmyk()}
    # One more image per class than the good ones, and the quota raised by one: every image is used.
    metrics = archive_split(extras, take=unchanged_outside_data, **{"data.train_per_class": QUOTA["data.train_per_class"] + 1,
                                        "data.non_rgb": "convert"})
    assert metrics["skipped"]["count"] == 0
    assert metrics["converted_to_rgb"] == 2
    table = pd.read_csv(paths.MANIFEST)
    for name in extras:
        row = table[table["path"].str.endswith("/" + Path(name).name)]
        assert len(row) == 1, name
        with Image.open(paths.SPLIT / row["path"].iloc[0]) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            assert image.size == (row["width"].iloc[0], row["height"].iloc[0])


def test_one_class_archive_is_a_shortfall(workspace, write_params, unchanged_outside_data, tmp_path) -> None:
    zip_path = write_zip(tmp_path / "inputs" / "train.zip", kaggle_files(cats=GOOD_PER_CLASS, dogs=0))
    config = write_params({"data.source": "dogs-vs-cats", "data.archive": str(zip_path), **QUOTA})
    unchanged_outside_data()
    sources.download(config)
    with pytest.raises(UserError, match=r"^class 'dog' has 0 usable images \(0 skipped\), but "):
        split.split(config)
    assert not paths.SPLIT.exists()


# --- the same sweep through the real stage scripts ---------------------------------------


def run_stage(name: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(stage_argv(name), cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def test_stage_scripts_on_a_bad_archive(workspace, mlflow_store, write_params, unchanged_outside_data, tmp_path) -> None:
    extras = plain_bad_entries() | JUNK
    good = kaggle_files(cats=GOOD_PER_CLASS, dogs=GOOD_PER_CLASS)
    zip_path = write_zip(tmp_path / "inputs" / "train.zip", good | extras)
    evil_path = write_zip(tmp_path / "inputs" / "evil.zip", good | {"../../evil.jpg": b"x"})
    write_params({"data.source": "dogs-vs-cats", "data.archive": str(zip_path), **QUOTA})
    unchanged_outside_data()
    for name in ("download", "split"):
        result = run_stage(name, workspace)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert_not_in_split(extras)
    # Now an archive with one escaping entry: download refuses it, the previous raw data stays.
    before = paths.RAW_ARCHIVE.read_bytes()
    write_params({"data.source": "dogs-vs-cats", "data.archive": str(evil_path), **QUOTA})
    result = run_stage("download", workspace)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"imgclf: {evil_path}: entry '../../evil.jpg' contains '..': refusing the whole archive")
    assert "Traceback" not in result.stderr
    assert paths.RAW_ARCHIVE.read_bytes() == before
