"""Your own images: a folder, an archive of one or a labels CSV, through download -> split -> baseline.

The folders are real: generated images in six formats, unbalanced classes, a corrupt file, a duplicate
across classes, hidden files, an EXIF-rotated photo, transparency, a pre-split layout.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from imgclf import paths

from helpers.dvc_project import make_project, run
from helpers.workspace import TINY_TRAINING, pattern_image

FORMATS = [("JPEG", ".jpg"), ("PNG", ".png"), ("BMP", ".bmp"), ("GIF", ".gif"), ("WEBP", ".webp"), ("TIFF", ".tiff")]
OWN = {"image.size": [16, 16], "data.train_per_class": "all", "data.test_per_class": "all",
       "data.test_fraction": 0.25, "data.validation_fraction": 0.0}


def image_bytes(label: int, index: int, fmt: str, mode: str = "RGB") -> bytes:
    image = pattern_image(label, index, (20, 24), rgb=True).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def rotated_jpeg(label: int, index: int) -> bytes:
    """A JPEG stored sideways with EXIF orientation 6 ("rotate 90 clockwise to view")."""
    image = pattern_image(label, index, (20, 24), rgb=True)  # 24 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def own_folder(root: Path, counts: dict[str, int]) -> Path:
    """<class>/<image> files cycling through the six formats, plus the awkward files every real folder has."""
    for label, (name, count) in enumerate(counts.items()):
        for index in range(count):
            fmt, suffix = FORMATS[index % len(FORMATS)]
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"img{index:03d}{suffix}").write_bytes(image_bytes(label, index, fmt))
    return root


def build_messy_folder(root: Path) -> Path:
    """Unbalanced (12/8/6), mixed formats and modes, a corrupt file, a duplicate across classes, junk."""
    own_folder(root, {"cat": 12, "dog": 8, "fox": 6})
    (root / "cat" / "nested").mkdir()
    (root / "cat" / "nested" / "deep.png").write_bytes(image_bytes(0, 50, "PNG", "RGBA"))  # alpha
    (root / "dog" / "gray.png").write_bytes(image_bytes(1, 51, "PNG", "L"))
    (root / "dog" / "sideways.jpg").write_bytes(rotated_jpeg(1, 52))
    (root / "fox" / "broken.jpg").write_bytes(image_bytes(2, 53, "JPEG")[:200])  # truncated
    (root / "fox" / "copy_of_cat.png").write_bytes((root / "cat" / "img001.png").read_bytes())
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / ".hidden.jpg").write_bytes(b"junk")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._img000.jpg").write_bytes(b"junk")
    (root / "notes.txt").write_text("not in a class folder")
    return root


def run_ok(run_stage_script, *names: str) -> None:
    for name in names:
        run_stage_script(name)


def manifest(workspace: Path) -> pd.DataFrame:
    return pd.read_csv(workspace / paths.MANIFEST, dtype=str, keep_default_na=False)


def split_metrics(workspace: Path) -> dict:
    return json.loads((workspace / "metrics" / "split.json").read_text())


def test_a_messy_folder_goes_through_download_split_and_baseline(
    tmp_path, workspace, mlflow_store, write_params, run_stage_script, capsys
):
    folder = build_messy_folder(tmp_path / "pets")
    write_params(TINY_TRAINING | OWN | {"data.source": "folder", "data.path": str(folder)})

    run_ok(run_stage_script, "download", "split")

    metrics = split_metrics(workspace)
    usable = {"cat": 13, "dog": 10, "fox": 6}  # fox: 6 + copy - broken - duplicate
    counts = metrics["counts"]
    assert {name: counts["train"][name] + counts["test"][name] for name in usable} == usable
    # Stratified: each class keeps its share (round(0.25 n)) in test.
    assert counts["test"] == {"cat": 3, "dog": 2, "fox": 2}
    reasons = {item["file"]: item["reason"] for item in metrics["skipped"]["files"]}
    assert reasons["fox/broken.jpg"].startswith("corrupt or truncated")
    assert reasons["notes.txt"].startswith("not in a class folder")
    assert metrics["duplicates"] == {"count": 1, "files": [{"file": "fox/copy_of_cat.png", "same_as": "cat/img001.png"}]}
    assert not any(".hidden" in name or "MACOSX" in name or "DS_Store" in name for name in reasons)
    assert metrics["rotated_upright"] == 1 and metrics["converted_to_rgb"] >= 2  # RGBA, L, palette GIF

    table = manifest(workspace)
    assert set(table["sha256"][table["split"] == "train"]).isdisjoint(table["sha256"][table["split"] == "test"])
    written = {Path(path).suffix for path in table["path"]}
    assert written <= {".jpg", ".png", ".bmp"}  # what training reads; GIF, WebP, TIFF became PNG
    assert "train/cat/nested__deep.png" in set(table["path"]) or "test/cat/nested__deep.png" in set(table["path"])
    sideways = table[table["path"].str.endswith("sideways.jpg")].iloc[0]
    assert (sideways["width"], sideways["height"]) == ("20", "24")  # turned upright: 20 wide, 24 high

    run_stage_script("baseline")
    baseline = json.loads((workspace / "metrics" / "baseline.json").read_text())
    assert baseline["test_images"] == 7 and set(baseline["per_class"]) == set(usable)
    assert "images: 16x16 rgb" in capsys.readouterr().out  # what `auto` resolved to, said in the output


def test_a_pre_split_zip_keeps_exactly_the_users_files(tmp_path, workspace, mlflow_store, write_params, run_stage_script):
    files = {}
    for split, per_class in (("train", 5), ("test", 3)):
        for label, name in enumerate(("ant", "bee")):
            for index in range(per_class):
                files[f"bugs/{split}/{name}/{split}{index}.png"] = image_bytes(label, index + (100 if split == "test" else 0), "PNG")
    archive = tmp_path / "bugs.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name, data in files.items():
            out.writestr(name, data)
    write_params(TINY_TRAINING | OWN | {"data.source": "folder", "data.path": str(archive)})

    run_ok(run_stage_script, "download", "split", "baseline")

    table = manifest(workspace)
    expected = sorted(name.removeprefix("bugs/") for name in files)
    assert sorted(table["path"]) == expected  # every file, in the user's own split
    kept = {row["path"]: row["sha256"] for _, row in table.iterrows()}
    assert all(kept[name.removeprefix("bugs/")] == hashlib.sha256(data).hexdigest() for name, data in files.items())
    assert json.loads((workspace / "metrics" / "baseline.json").read_text())["test_images"] == 6  # the user's test set


def test_a_tar_gz_with_counts_per_class(tmp_path, workspace, mlflow_store, write_params, run_stage_script):
    folder = own_folder(tmp_path / "src", {"a": 6, "b": 6})
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        out.add(folder, arcname="photos")
    write_params({"image.size": [16, 16], "data.source": "folder", "data.path": str(archive),
                  "data.train_per_class": 4, "data.test_per_class": 2})
    run_ok(run_stage_script, "download", "split")
    assert split_metrics(workspace)["counts"] == {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2}}


def test_a_labels_csv_keeps_its_extra_columns(tmp_path, workspace, mlflow_store, write_params, run_stage_script):
    root = tmp_path / "shop"
    (root / "img" / "x").mkdir(parents=True)
    rows = ["path,label,color,split"]  # `split` clashes with the manifest's own column
    for index in range(8):
        label = "shirt" if index % 2 else "shoe"
        name = f"img/{'x/' if index < 4 else ''}{index}.jpg"
        (root / name).write_bytes(image_bytes(index % 2, index, "JPEG"))
        rows.append(f"{name},{label},{'red' if index < 4 else 'blue'},batch{index % 3}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    write_params(TINY_TRAINING | OWN | {"data.source": "csv", "data.path": str(root / "labels.csv"), "data.test_fraction": 0.5})

    run_ok(run_stage_script, "download", "split", "baseline")

    table = manifest(workspace)
    assert list(table.columns) == ["path", "class", "split", "sha256", "width", "height", "color", "csv_split"]
    assert set(table["split"]) == {"train", "test"} and set(table["csv_split"]) == {"batch0", "batch1", "batch2"}
    assert sorted(table["class"].unique()) == ["shirt", "shoe"] and len(table) == 8
    assert set(table[table["path"].str.endswith("x__1.jpg")]["color"]) == {"red"}
    assert split_metrics(workspace)["counts"]["test"] == {"shirt": 2, "shoe": 2}
    assert set(json.loads((workspace / "metrics" / "baseline.json").read_text())["per_class"]) == {"shirt", "shoe"}


def test_balanced_class_weights_change_training_on_unbalanced_data(
    tmp_path, workspace, mlflow_store, write_params, run_stage_script
):
    folder = own_folder(tmp_path / "skewed", {"common": 18, "rare": 4})
    base = TINY_TRAINING | OWN | {"data.source": "folder", "data.path": str(folder), "baseline.epochs": 2}
    write_params(base)
    run_ok(run_stage_script, "download", "split", "baseline")
    plain = (workspace / "plots" / "baseline" / "history.csv").read_text()
    write_params(base | {"baseline.class_weight": "balanced"})
    run_stage_script("baseline")
    assert (workspace / "plots" / "baseline" / "history.csv").read_text() != plain  # the loss weighs classes


def expect_exit_2(run_stage_script, capsys, name: str) -> str:
    with pytest.raises(SystemExit) as exited:
        run_stage_script(name)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("imgclf: ")
    return lines[-1]


@pytest.mark.parametrize("case", ["missing", "one-class", "link-outside", "zip-escape", "few-images", "csv-columns",
                                  "csv-missing-file", "csv-outside", "test-all-train-number"])
def test_bad_inputs_stop_with_one_line_and_write_nothing(
    case, tmp_path, workspace, mlflow_store, write_params, run_stage_script, capsys
):
    overrides = OWN | {"data.source": "folder"}
    stage = "download"  # the stage expected to stop; an earlier one runs first when it is split
    if case == "missing":
        overrides |= {"data.path": str(tmp_path / "nowhere")}
        expected = "no such folder: give a folder of <class>/<images>"
    elif case == "one-class":
        overrides |= {"data.path": str(own_folder(tmp_path / "one", {"only": 4}))}
        stage, expected = "split", "found 1 class (only): a classifier needs at least two"
    elif case == "link-outside":
        folder = own_folder(tmp_path / "linked", {"a": 2, "b": 2})
        (tmp_path / "secret.jpg").write_bytes(image_bytes(0, 9, "JPEG"))
        os.symlink(tmp_path / "secret.jpg", folder / "a" / "secret.jpg")
        overrides |= {"data.path": str(folder)}
        expected = "outside data.path: refusing the whole folder"
    elif case == "zip-escape":
        archive = tmp_path / "evil.zip"
        with zipfile.ZipFile(archive, "w") as out:
            out.writestr("a/ok.png", image_bytes(0, 1, "PNG"))
            out.writestr("../../evil.png", image_bytes(0, 2, "PNG"))
        overrides |= {"data.path": str(archive)}
        expected = "entry '../../evil.png' contains '..': refusing the whole archive"
    elif case == "few-images":
        overrides |= {"data.path": str(own_folder(tmp_path / "few", {"a": 3, "b": 6})),
                      "data.train_per_class": 4, "data.test_per_class": 1}
        stage, expected = "split", "class 'a' has 3 usable images (0 skipped), but data.test_per_class 1 + data.train_per_class 4"
    elif case.startswith("csv"):
        root = tmp_path / "csv"
        root.mkdir()
        (root / "a.png").write_bytes(image_bytes(0, 1, "PNG"))
        text = {"csv-columns": "file,label\na.png,x\n", "csv-missing-file": "path,label\na.png,x\nb.png,y\n",
                "csv-outside": "path,label\na.png,x\n../secret.png,y\n"}[case]
        (root / "labels.csv").write_text(text)
        overrides |= {"data.source": "csv", "data.path": str(root / "labels.csv")}
        expected = {"csv-columns": "the CSV has no path column (its columns: file, label)",
                    "csv-missing-file": "1 row(s) name files that do not exist (first: b.png)",
                    "csv-outside": "line 3: ../secret.png is outside the CSV's folder"}[case]
    else:
        overrides |= {"data.path": str(own_folder(tmp_path / "ok", {"a": 3, "b": 3})), "data.train_per_class": 5}
        stage, expected = "split", "data.test_per_class = all: takes every image, leaving none for train"
    write_params(overrides)
    if stage == "split":
        run_stage_script("download")
    before = outputs(workspace)

    line = expect_exit_2(run_stage_script, capsys, stage)

    assert expected in line, line
    assert outputs(workspace) == before  # nothing written: no partial data/raw or data/split


def outputs(workspace: Path) -> list[str]:
    """Every file in the workspace but the MLflow store's (empty parent folders do not count)."""
    return sorted(str(path.relative_to(workspace)) for path in workspace.rglob("*")
                  if path.is_file() and not path.relative_to(workspace).parts[0].startswith(("mlflow", "mlartifacts")))


@pytest.mark.slow
def test_dvc_sees_changes_under_data_path_and_nothing_else(tmp_path):
    folder = own_folder(tmp_path / "mine", {"left": 5, "right": 5})
    project = make_project(tmp_path / "project", ["download", "split"], OWN | {"data.source": "folder", "data.path": str(folder)})

    first = run(["dvc", "repro"], project).stdout
    assert "Running stage 'download'" in first and "Running stage 'split'" in first
    assert "Running stage" not in run(["dvc", "repro"], project).stdout  # no change: nothing runs

    (folder / "left" / "new.png").write_bytes(image_bytes(0, 77, "PNG"))  # a file added
    added = run(["dvc", "repro"], project).stdout
    assert "Running stage 'download'" in added and "Running stage 'split'" in added
    assert split_metrics(project)["counts"]["train"]["left"] + split_metrics(project)["counts"]["test"]["left"] == 6

    (folder / "right" / "img000.jpg").unlink()  # a file removed
    assert "Running stage 'split'" in run(["dvc", "repro"], project).stdout
    (folder / "left" / "img001.png").write_bytes(image_bytes(0, 78, "PNG"))  # a file edited
    assert "Running stage 'split'" in run(["dvc", "repro"], project).stdout
    assert "Running stage" not in run(["dvc", "repro"], project).stdout


def scanned_digits(root: Path) -> Path:
    """scikit-learn's 1,797 real 8x8 handwritten scans (16 grey levels) as <digit>/<n>.png: a folder of small images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255 / 16).round().astype("uint8"), mode="L").save(root / str(label) / f"{index:04d}.png")
    return root


@pytest.mark.slow
def test_layout_auto_follows_the_images_not_the_source(tmp_path, workspace, mlflow_store, write_params, run_stage_script,
                                                       capsys):
    """A folder of small scans gets the chapter's layout, as the digits built in do: only size and colour are set."""
    folder = scanned_digits(tmp_path / "scans")
    write_params({"data.source": "folder", "data.path": str(folder), "image.size": [28, 28],
                  "image.color_mode": "grayscale", "data.train_per_class": "all", "data.test_per_class": "all"})
    run_ok(run_stage_script, "download", "split")
    run_stage_script("baseline")

    out = capsys.readouterr().out
    assert "params: auto -> cnn.layout=chapter" in out  # said when resolved
    baseline = json.loads((workspace / "metrics" / "baseline.json").read_text())
    assert baseline["test_images"] == sum(split_metrics(workspace)["counts"]["test"].values()) > 350
    assert baseline["total_params"] > 10_000_000  # the chapter's flatten-into-dense model, not the photo one
    assert baseline["accuracy"] >= 0.9, baseline["accuracy"]  # the photo layout reached 0.17 here
