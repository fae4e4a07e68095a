"""`python -m imgclf inspect`: what a folder, archive or CSV of images holds, and the params it suggests."""

from __future__ import annotations

import io
import json
import shlex
import zipfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from imgclf import cli
from imgclf import params as params_module

from helpers.workspace import pattern_image


def png(label: int, index: int, size: tuple[int, int], mode: str) -> bytes:
    buffer = io.BytesIO()
    pattern_image(label, index, size, rgb=True).convert(mode).save(buffer, format="PNG" if mode == "L" else "JPEG")
    return buffer.getvalue()


def pets(root: Path) -> Path:
    """cat: 12 RGB JPEGs 24 wide x 20 high, dog: 4 grayscale PNGs 40 x 30, a duplicate in each way, junk."""
    for index in range(12):
        (root / "cat").mkdir(parents=True, exist_ok=True)
        (root / "cat" / f"{index:02d}.jpg").write_bytes(png(0, index, (20, 24), "RGB"))
    for index in range(4):
        (root / "dog").mkdir(parents=True, exist_ok=True)
        (root / "dog" / f"{index:02d}.png").write_bytes(png(1, index, (30, 40), "L"))
    (root / "cat" / "again.jpg").write_bytes((root / "cat" / "00.jpg").read_bytes())  # within a class
    (root / "dog" / "cat_here.jpg").write_bytes((root / "cat" / "01.jpg").read_bytes())  # across classes
    (root / "dog" / "notes.jpg").write_text("not an image")
    (root / "readme.txt").write_text("outside the class folders")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def run(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main(["inspect", *argv])
    assert done.value.code == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_a_folder_counts_sizes_modes_duplicates_and_suggests_params(tmp_path, workspace, capsys):
    folder = pets(tmp_path / "pets")
    found = json.loads(run(capsys, str(folder), "--format", "json"))

    assert found["classes"] == {"cat": 13, "dog": 5}  # the copies are images too; the split drops them
    assert found["imbalance_ratio"] == 2.6
    assert found["width"] == {"min": 24, "median": 24, "max": 40} and found["height"]["max"] == 30
    assert found["formats"] == {"JPEG": 14, "PNG": 4} and found["modes"] == {"RGB": 14, "L": 4}
    assert found["not_images"] == ["dog/notes.jpg"]
    assert found["skipped"] == [["readme.txt", "not in a class folder (<class>/<file>)"]]
    assert found["duplicates_within_class"] == [["cat/00.jpg", "cat/again.jpg"]]
    assert found["duplicates_across_classes"] == [["cat/01.jpg", "dog/cat_here.jpg"]]
    suggested = found["suggested"]
    assert suggested["image.size"] == [28, 28]  # small images at their size, not below the chapter's 28
    assert suggested["image.color_mode"] == "rgb" and suggested["cnn.layout"] == "chapter"
    assert suggested["baseline.class_weight"] == "balanced"  # 2.6 : 1

    # The suggested line is a valid experiment: its overrides pass params.yaml's checks.
    words = shlex.split(found["command"])
    assert words[:3] == ["dvc", "exp", "run"]
    overrides = dict(word.split("=", 1) for word in words[4::2])
    params_module.apply_overrides(workspace / "params.yaml", {key: yaml.safe_load(value) for key, value in overrides.items()})
    loaded = params_module.load(workspace / "params.yaml")
    assert loaded.data.path == str(folder) and loaded.image.size == (28, 28) and loaded.baseline.class_weight == "balanced"


def test_the_table_an_archive_and_a_labels_csv(tmp_path, workspace, capsys):
    folder = pets(tmp_path / "pets")
    table = run(capsys, str(folder))
    assert "18 images in 2 classes" in table and "unbalanced" in table
    assert "duplicates across classes (the split keeps the first): 1" in table
    assert "dvc exp run -S data.source=folder" in table

    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.parent != folder:  # class folders only, under one wrapping folder
                opened.write(path, Path("pets") / path.relative_to(folder))  # one wrapping folder
    zipped = json.loads(run(capsys, str(archive), "--format", "json"))
    assert zipped["classes"] == {"cat": 13, "dog": 5}

    labels = tmp_path / "labels.csv"
    rows = [f"pets/cat/{index:02d}.jpg,cat" for index in range(12)] + [f"pets/dog/{index:02d}.png,dog" for index in range(4)]
    labels.write_text("path,label\n" + "\n".join(rows) + "\n")
    listed = json.loads(run(capsys, str(labels), "--format", "json"))
    assert listed["classes"] == {"cat": 12, "dog": 4} and "data.source=csv" in listed["command"]


def test_without_a_path_it_reads_data_path_for_your_own_images(tmp_path, workspace, write_params, capsys):
    folder = pets(tmp_path / "pets")
    write_params({"data.source": "folder", "data.path": str(folder)})
    assert "18 images in 2 classes" in run(capsys)


def test_a_path_that_is_not_there_is_one_line(tmp_path, workspace, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["inspect", str(tmp_path / "nothing")])
    assert done.value.code == 2
    assert capsys.readouterr().err.startswith(f"imgclf: data.path = {tmp_path / 'nothing'}: no such folder")


def test_only_headers_are_read(tmp_path, workspace, capsys, monkeypatch):
    """No pixel is decoded: Image.load is never called."""
    folder = pets(tmp_path / "pets")
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded pixels"))
    assert "18 images" in run(capsys, str(folder))
