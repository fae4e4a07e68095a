"""data.storage: the same images as class folders or in shards, with the same inputs, model and reports.

The folders are real (test_own_images' messy folder: six formats, a corrupt file, a duplicate, an
EXIF-rotated photo, transparency); each storage runs the real stages in its own workspace.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_own_images import OWN, build_messy_folder, image_bytes, own_folder

from imgclf import paths
from imgclf.data import listing, shards, tfdata

from helpers.workspace import TINY_TRAINING


def stored(workspace: Path, write_params, run_stage_script, folder: Path, storage: str, *stages: str, **extra):
    params = write_params(TINY_TRAINING | OWN | {"data.source": "folder", "data.path": str(folder),
                                                 "data.storage": storage} | extra)
    for name in ("download", "split", *stages):
        run_stage_script(name)
    return params


def every_element(dataset) -> list:
    return [tuple(np.asarray(part).tobytes() for part in _flat(element)) for element in dataset]


def _flat(element):
    if isinstance(element, dict):
        return [element[key] for key in sorted(element)]
    if isinstance(element, (tuple, list)):
        return [leaf for part in element for leaf in _flat(part)]
    return [element]


def split_inputs(params, root: Path) -> dict:
    data = tfdata.load_split(params, 4, root=root)
    ordered, _, _ = tfdata.load_ordered(params, "test", 4, root=root)
    assert data.validation is not None
    return {"train": every_element(data.train), "validation": every_element(data.validation),
            "test": every_element(data.test), "ordered": every_element(ordered),
            "counts": data.class_counts, "names": data.class_names}


@pytest.fixture(params=[16, 72], ids=["small images, decoded a batch at a time", "larger, one by one"])
def both(request, tmp_path, workspace, mlflow_store, write_params, run_stage_script):
    """The messy folder split twice: folders (kept as tmp/folders) and shards (left in the workspace)."""
    source = build_messy_folder(tmp_path / "pets")
    held_out = {"data.validation_fraction": 0.2, "image.size": [request.param, request.param]}
    folders = stored(workspace, write_params, run_stage_script, source, "folders", "baseline", **held_out)
    kept = tmp_path / "folders"
    shutil.copytree(workspace / "data", kept / "data")
    shutil.copytree(workspace / "models", kept / "models")
    shutil.copy(workspace / "metrics" / "split.json", kept / "split.json")
    shutil.rmtree(workspace / "data")
    sharded = stored(workspace, write_params, run_stage_script, source, "shards", "baseline", **held_out)
    return folders, sharded, kept


def test_shards_give_the_same_split_inputs_and_model_bytes_as_folders(both, workspace):
    folders, sharded, kept = both
    assert folders.data.storage == "folders" and sharded.data.storage == "shards"
    raw, split = workspace / paths.RAW, workspace / paths.SPLIT
    assert shards.is_pack(raw / "pack") and not (raw / "images.zip").exists()
    assert not [path for path in split.rglob("*") if path.suffix in (".png", ".jpg", ".bmp")]  # no image files
    assert listing.sharded(split) and not listing.sharded(kept / "data" / "split")
    # The split's working tables (its ledger) and pending bytes never reach the output DVC caches.
    assert not [path for root in (split, kept / "data" / "split") for path in root.rglob(".*")]

    # The same rows (paths, classes, sha256), the same counts and skips; only where the bytes lie differs.
    mine, theirs = (pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
                    for root in (split, kept / "data" / "split"))
    assert mine.drop(columns=["shard", "offset", "size"]).equals(theirs)
    metrics, before = (json.loads(path.read_text()) for path in (workspace / "metrics" / "split.json", kept / "split.json"))
    assert metrics.pop("storage") == "shards" and before.pop("storage") == "folders" and metrics == before
    # Unchanged images point into the snapshot's pack; re-encoded ones (rotated, converted) into the split's.
    origins = mine["shard"].str.split(":").str[0]
    assert set(origins) == {"raw", "split"} and (origins == "split").sum() >= 3
    for row in mine.itertuples():
        shard = shards.referenced_path(row.shard)
        data = listing.SplitFile(row.path, split, shard, int(row.offset), int(row.size)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256 == \
            hashlib.sha256((kept / "data" / "split" / row.path).read_bytes()).hexdigest()

    # Training inputs: the same pixels and labels in the same order, hold-out and shuffle included.
    assert split_inputs(sharded, split) == split_inputs(folders, kept / "data" / "split")
    files = tfdata.test_files(split)
    assert [str(file.path) for file in files] == [file.path for file in tfdata.test_files(kept / "data" / "split")]
    # ... so the same model, byte for byte.
    assert (workspace / paths.model_file("baseline")).read_bytes() == \
        (kept / paths.model_file("baseline")).read_bytes()


def test_several_label_columns_read_the_same_from_shards(tmp_path, workspace, mlflow_store, write_params,
                                                         run_stage_script):
    folder = own_folder(tmp_path / "csv" / "images", {"cat": 8, "dog": 8})
    rows = ["path,label,color"] + [f"images/{name}/{path.name},{name},{'dark' if index % 2 else 'light'}"
                                    for name in ("cat", "dog")
                                    for index, path in enumerate(sorted((folder / name).iterdir()))]
    (tmp_path / "csv" / "labels.csv").write_text("\n".join(rows) + "\n")
    extra = {"data.source": "csv", "data.path": str(tmp_path / "csv" / "labels.csv"),
             "data.label_columns": ["label", "color"]}
    found = {}
    for storage in ("folders", "shards"):
        shutil.rmtree(workspace / "data", ignore_errors=True)
        params = stored(workspace, write_params, run_stage_script, folder, storage, **extra)
        data = tfdata.load_split(params, 4, all_label_columns=True)
        found[storage] = (every_element(data.train), every_element(data.test), data.label_heads)
    assert found["shards"] == found["folders"] and found["shards"][2]["color"] == ("dark", "light")


def test_auto_keeps_small_sets_in_folders_and_shards_large_ones(tmp_path, workspace, mlflow_store, write_params,
                                                                run_stage_script):
    folder = own_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    stored(workspace, write_params, run_stage_script, folder, "auto")
    assert (workspace / paths.RAW_IMAGES).is_file() and not listing.sharded(workspace / paths.SPLIT)
    stored(workspace, write_params, run_stage_script, folder, "auto", **{"data.shards_from": 11})
    assert shards.is_pack(workspace / paths.RAW_PACK) and listing.sharded(workspace / paths.SPLIT)
    assert json.loads((workspace / "metrics" / "split.json").read_text())["storage"] == "shards"
    # The same folder snapshots to the same shard bytes every time.
    first = {path.name: path.read_bytes() for path in (workspace / paths.RAW_PACK).iterdir()}
    run_stage_script("download")
    assert {path.name: path.read_bytes() for path in (workspace / paths.RAW_PACK).iterdir()} == first
    # inspect reads a sharded split as it reads class folders.
    from imgclf.data import inspection

    findings = inspection.inspect("folder", str(workspace / paths.SPLIT))
    assert findings.pre_split and sum(findings.classes.values()) == 12 and not findings.not_images
    # The array sources too: every digit is re-encoded as PNG, so all go into the split's own pack.
    shutil.rmtree(workspace / "data")
    params = write_params(TINY_TRAINING | {"data.storage": "shards", "data.train_per_class": 5, "data.test_per_class": 2})
    for name in ("download", "split"):
        run_stage_script(name)
    table = pd.read_csv(workspace / paths.MANIFEST, dtype=str)
    assert table["shard"].str.startswith("split:").all() and len(table) == 70
    assert tfdata.check_layout() == {"train": {str(digit): 5 for digit in range(10)},
                                     "test": {str(digit): 2 for digit in range(10)}}
    assert params.data.shards_from == 100000
    assert not (workspace / paths.SPLIT / ".pending").exists()  # the split's own pack, written from files it removed


def test_a_packed_source_is_linked_not_copied_into_the_snapshot(tmp_path, workspace, mlflow_store, write_params,
                                                                 run_stage_script, capsys):
    folder = own_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    (folder / "dog" / "broken.png").write_bytes(image_bytes(1, 99, "PNG")[:40])
    packed = tmp_path / "packed"
    shards.pack(_members(folder), packed)
    stored(workspace, write_params, run_stage_script, packed, "shards", "baseline")
    for shard in json.loads((packed / shards.INFO).read_text())["shards"]:
        assert os.path.samefile(packed / shard, workspace / paths.RAW_PACK / shard)  # the same blocks
    metrics = json.loads((workspace / "metrics" / "split.json").read_text())
    assert [item["file"] for item in metrics["skipped"]["files"]] == ["dog/broken.png"]  # counted, reported
    # predict on the sharded split classifies its images as if they were files.
    from imgclf.inference import predict

    capsys.readouterr()
    assert predict.main([str(workspace / paths.SPLIT)], "baseline", 1, "csv", 8, "imgclf") == 0
    out = capsys.readouterr()
    assert out.out.count("\n") == 1 + len(pd.read_csv(workspace / paths.MANIFEST)) and "12 images classified" in out.err


def _members(folder: Path):
    from imgclf.data import snapshot

    found, _ = snapshot.members("folder", str(folder))
    return found


def test_a_sharded_split_without_its_snapshot_says_what_to_fetch(tmp_path, workspace, mlflow_store, write_params,
                                                                  run_stage_script):
    folder = own_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    params = stored(workspace, write_params, run_stage_script, folder, "shards")
    shutil.rmtree(workspace / paths.RAW)  # as after `dvc pull split` alone
    from imgclf.errors import UserError

    with pytest.raises(UserError, match=r"raw/pack/shard-[0-9a-f]{16}\.tfrecord: missing .*dvc pull download split"):
        tfdata.load_split(params, 4)
    with pytest.raises(UserError, match="dvc pull download split"):
        tfdata.test_files()
    # A manifest pointing anywhere else is refused, not followed.
    manifest = workspace / paths.MANIFEST
    text = manifest.read_text().splitlines()
    first = text[1].split(",")
    first[text[0].split(",").index("shard")] = "../../../etc/passwd"
    manifest.write_text("\n".join([text[0], ",".join(first), *text[2:]]) + "\n")
    with pytest.raises(UserError, match=r"line 2 points at '../../../etc/passwd', not a shard"):
        tfdata.load_split(params, 4)


def test_reading_a_plain_folder_does_not_load_tensorflow(tmp_path):
    """The download and `inspect` of a folder ask whether it is a sharded split; answering must stay cheap."""
    import subprocess
    import sys

    folder = own_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    code = ("import sys; from imgclf.data import snapshot; found, _ = snapshot.members('folder', sys.argv[1]); "
            "print(len(found), 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["4", "False"]


def test_a_broken_file_held_twice_is_skipped_as_broken_both_times(tmp_path, workspace, mlflow_store, write_params,
                                                                    run_stage_script):
    """The split notes each drawn image's sha256 to find duplicates; a file that then fails its check must
    not make a later copy of it "a duplicate" of something never drawn."""
    folder = own_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    broken = image_bytes(1, 99, "PNG")[:40]
    (folder / "cat" / "broken.png").write_bytes(broken)
    (folder / "dog" / "broken.png").write_bytes(broken)
    (folder / "dog" / "again.jpg").write_bytes((folder / "dog" / "img000.jpg").read_bytes())  # a real duplicate
    stored(workspace, write_params, run_stage_script, folder, "shards")
    metrics = json.loads((workspace / "metrics" / "split.json").read_text())
    reasons = {item["file"]: item["reason"] for item in metrics["skipped"]["files"]}
    assert reasons["cat/broken.png"] == reasons["dog/broken.png"] and "duplicate" not in reasons["dog/broken.png"]
    assert [item["file"] for item in metrics["duplicates"]["files"]] in (["dog/again.jpg"], ["dog/img000.jpg"])
    assert sum(metrics["total"].values()) == 12
