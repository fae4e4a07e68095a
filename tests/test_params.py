"""params.yaml validation: every kind of bad value gives one line `imgclf: params.yaml: ...`, exit 2.

Each case is checked twice: through `params.load` (the function every stage calls) and through
the real split stage script in a subprocess, so the exit code and stderr are what a user sees.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from imgclf import params
from imgclf.data.catalog import SOURCES
from imgclf.errors import UserError

from conftest import REPO, set_dotted, stage_argv

ONE_LINE = re.compile(r"^imgclf: params\.yaml: (?P<key>[\w.]+) = (?P<value>.*): (?P<allowed>.+)$")


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def edited(*edits) -> str:
    """The repo's params.yaml with edits applied: ("set", key, value) or ("del", key)."""
    raw = repo_params()
    for edit in edits:
        if edit[0] == "set":
            set_dotted(raw, edit[1], edit[2])
        else:
            *parents, last = edit[1].split(".")
            node = raw
            for key in parents:
                node = node[key]
            del node[last]
    return yaml.safe_dump(raw, sort_keys=False)


# (id, params.yaml text, regex the message must match in full)
CASES = [
    ("unknown-section", edited(("set", "colour", {"mode": "rgb"})),
     r"params\.yaml: colour = \{mode\}: unknown key; allowed: seed, data, .*"),
    ("unknown-key", edited(("set", "data.train_per_klass", 10)),
     r"params\.yaml: data\.train_per_klass = 10: unknown key; allowed: source, label_mode, label_columns, archive, "
     r"path, train_per_class, .*"),
    ("missing-key", edited(("del", "data.test_per_class")),
     r"params\.yaml: data\.test_per_class is missing: add it .*"),
    ("missing-section", edited(("del", "mlflow")),
     r"params\.yaml: mlflow is missing: add it .*"),
    ("wrong-type-int", edited(("set", "data.train_per_class", "many")),
     r"params\.yaml: data\.train_per_class = many: must be an integer >= 1 or all"),
    ("wrong-type-float-for-int", edited(("set", "data.train_per_class", 10.5)),
     r"params\.yaml: data\.train_per_class = 10\.5: must be an integer >= 1 or all"),
    ("wrong-type-bool-for-int", edited(("set", "seed", True)),
     r"params\.yaml: seed = true: must be an integer in \[0, 2147483647\]"),
    ("section-not-mapping", edited(("set", "data", 5)),
     r"params\.yaml: data = 5: must be a mapping of keys"),
    ("out-of-range-negative", edited(("set", "data.train_per_class", -1)),
     r"params\.yaml: data\.train_per_class = -1: must be an integer >= 1 or all"),
    ("out-of-range-zero", edited(("set", "data.test_per_class", 0)),
     r"params\.yaml: data\.test_per_class = 0: must be an integer >= 1 or all"),
    ("out-of-range-seed", edited(("set", "seed", 2**31)),
     r"params\.yaml: seed = 2147483648: must be an integer in \[0, 2147483647\]"),
    ("out-of-range-fraction", edited(("set", "data.validation_fraction", 0.5)),
     r"params\.yaml: data\.validation_fraction = 0\.5: must be a number in \[0\.0, 0\.5\)"),
    ("out-of-range-nan", edited(("set", "data.validation_fraction", float("nan"))),
     r"params\.yaml: data\.validation_fraction = nan: must be a number in \[0\.0, 0\.5\)"),
    ("unknown-source", edited(("set", "data.source", "imagenet")),
     r"params\.yaml: data\.source = imagenet: must be one of mnist-sample, mnist, fashion-mnist, "
     r"cifar10, cifar100, dogs-vs-cats, folder, csv"),
    ("unknown-distribution", edited(("set", "train.distribute", "multiworker")),
     r"params\.yaml: train\.distribute = multiworker: must be one of none, mirrored"),
    ("coarse-labels-elsewhere", edited(("set", "data.label_mode", "coarse")),
     r"params\.yaml: data\.label_mode = coarse: only cifar100 has coarse labels: use fine"),
    ("bad-label-mode", edited(("set", "data.label_mode", "super")),
     r"params\.yaml: data\.label_mode = super: must be one of fine, coarse"),
    ("convnet-three-filters", edited(("set", "convnet.filters", [32, 64, 128])),
     r"params\.yaml: convnet\.filters = \[32, 64, 128\]: must be a list of 2 integers in \[1, 2048\]"),
    ("whitening-too-large", edited(("set", "augmentation.whitening", True), ("set", "image.size", [65, 64])),
     r"params\.yaml: augmentation\.whitening = true: ZCA whitening takes images of at most 64x64 pixels "
     r"\(image\.size is 65x64\): set image\.size, or whitening: false"),
    ("crop-zero", edited(("set", "augmentation.crop", 0)),
     r"params\.yaml: augmentation\.crop = 0: must be a number in \[0\.1, 1\.0\]"),
    ("bad-architecture", edited(("set", "cnn.architecture", "vgg16")),
     r"params\.yaml: cnn\.architecture = vgg16: must be one of simple_cnn, alexnet, squeezenet, stn"),
    ("trainable-blocks-zero", edited(("set", "finetune.trainable", "blocks:0")),
     r"params\.yaml: finetune\.trainable = blocks:0: must be last_block, blocks:N \(the last N blocks, N >= 1\), all or head"),
    ("label-columns-without-csv", edited(("set", "data.label_columns", ["pattern", "color"])),
     r"params\.yaml: data\.label_columns = \[pattern, color\]: label columns come from a labels CSV: set "
     r"data\.source: csv, or leave \[label\]"),
    ("label-columns-reserved", edited(("set", "data.label_columns", ["label", "split"])),
     r"params\.yaml: data\.label_columns = \[label, split\]: must be a non-empty list of distinct column names .*"),
    ("bad-non-rgb", edited(("set", "data.non_rgb", "keep")),
     r"params\.yaml: data\.non_rgb = keep: must be one of convert, skip"),
    ("bad-archive-type", edited(("set", "data.archive", 7)),
     r"params\.yaml: data\.archive = 7: must be null or a path to a file"),
    ("empty-experiment", edited(("set", "mlflow.experiment", "  ")),
     r"params\.yaml: mlflow\.experiment =   : must be a non-empty string"),
    ("registered-model-with-slash", edited(("set", "mlflow.registered_model", "team/imgclf")),
     r"params\.yaml: mlflow\.registered_model = team/imgclf: must be letters, digits, '\.', '_' or '-' "
     r"\(it is used in models:/<name>@champion\)"),
    ("image-size-too-small", edited(("set", "image.size", [4, 28])),
     r"params\.yaml: image\.size = \[4, 28\]: must be auto or \[height, width\], integers in \[8, 1024\]"),
    ("image-size-one-side", edited(("set", "image.size", [28])),
     r"params\.yaml: image\.size = \[28\]: must be auto or .*"),
    ("image-size-float", edited(("set", "image.size", [28, 28.5])),
     r"params\.yaml: image\.size = \[28, 28\.5\]: must be auto or .*"),
    ("image-size-word", edited(("set", "image.size", "big")),
     r"params\.yaml: image\.size = big: must be auto or .*"),
    ("image-size-bool", edited(("set", "image.size", [True, 28])),
     r"params\.yaml: image\.size = \[true, 28\]: must be auto or .*"),
    ("invalid-yaml", "seed: 42\ndata:\n  source: [mnist-sample\n",
     r"params\.yaml: not valid YAML \(line \d+\): fix the syntax"),
    ("invalid-yaml-tab", "seed: 42\ndata:\n\tsource: mnist\n",
     r"params\.yaml: not valid YAML \(line 3\): fix the syntax"),
    ("empty-file", "",
     r"params\.yaml: must be a mapping of sections: .*"),
    ("duplicate-key", (REPO / "params.yaml").read_text().replace(
        "  train_per_class:", "  train_per_class: 3\n  train_per_class:", 1),
     r"params\.yaml: train_per_class is set twice \(line \d+\): keep one"),
]


@pytest.mark.parametrize("text, pattern", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_load_rejects(workspace: Path, text: str, pattern: str) -> None:
    (workspace / "params.yaml").write_text(text)
    with pytest.raises(UserError) as caught:
        params.load()
    message = str(caught.value)
    assert re.fullmatch(pattern, message), message
    assert "\n" not in message


def test_missing_params_file(workspace: Path) -> None:
    (workspace / "params.yaml").unlink()
    with pytest.raises(UserError, match=r"^params\.yaml: not found: run from the project root"):
        params.load()


def test_value_errors_follow_the_key_value_allowed_shape(workspace: Path) -> None:
    """Every `<key> = <value>` case names a real key and echoes the bad value."""
    checked = 0
    for name, text, pattern in CASES:
        if " = " not in pattern:
            continue
        (workspace / "params.yaml").write_text(text)
        with pytest.raises(UserError) as caught:
            params.load()
        match = ONE_LINE.match(f"imgclf: {caught.value}")
        assert match, (name, str(caught.value))
        checked += 1
    assert checked >= 15


# Subprocess: one representative per kind, through the real stage script.
STAGE_CASES = [
    "unknown-section", "unknown-key", "missing-key", "wrong-type-int", "out-of-range-negative",
    "unknown-source", "image-size-too-small", "invalid-yaml",
]


@pytest.mark.parametrize("case", STAGE_CASES)
def test_stage_script_prints_one_line_and_exits_2(workspace: Path, case: str) -> None:
    name, text, pattern = next(item for item in CASES if item[0] == case)
    (workspace / "params.yaml").write_text(text)
    result = subprocess.run(
        stage_argv("split"),
        cwd=workspace, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch("imgclf: " + pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    # The stage stopped before doing anything: no run in the store, no outputs.
    assert not (workspace / "data").exists()
    assert not (workspace / "metrics").exists()


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_auto_resolves_per_source(write_params, source: str) -> None:
    config = write_params({"data.source": source, "image.size": "auto", "image.color_mode": "auto"})
    info = SOURCES[source]
    assert config.data.source == source
    assert config.image.size == info.image_size
    assert config.image.color_mode == info.color_mode


def test_auto_resolution_by_source_kind(write_params) -> None:
    """The concrete values the README promises, not just 'whatever the catalog says'."""
    expected = {
        "mnist-sample": ((28, 28), "grayscale"), "mnist": ((28, 28), "grayscale"),
        "fashion-mnist": ((28, 28), "grayscale"), "cifar10": ((32, 32), "rgb"),
        "cifar100": ((32, 32), "rgb"), "dogs-vs-cats": ((150, 150), "rgb"),
        "folder": ((150, 150), "rgb"), "csv": ((150, 150), "rgb"),
    }
    assert set(expected) == set(SOURCES)
    for source, (size, mode) in expected.items():
        config = write_params({"data.source": source})
        assert (config.image.size, config.image.color_mode) == (size, mode), source


def test_explicit_values_are_kept(write_params) -> None:
    config = write_params({"data.source": "cifar10", "image.size": [64, 48], "image.color_mode": "grayscale"})
    assert config.image.size == (64, 48)
    assert config.image.color_mode == "grayscale"


def test_valid_edge_values_pass(write_params) -> None:
    config = write_params({
        "seed": 0, "data.train_per_class": 1, "data.test_per_class": 1,
        "data.validation_fraction": 0.0, "data.archive": "somewhere/train.zip", "image.size": [8, 1024],
    })
    assert (config.seed, config.data.train_per_class, config.image.size) == (0, 1, (8, 1024))
    assert config.data.archive == "somewhere/train.zip"


def test_flatten_names_params_like_mlflow(write_params) -> None:
    config = write_params({"data.train_per_class": 7})
    flat = params.flatten(params.section_dict(config, "seed", "data", "image"))
    assert flat["seed"] == config.seed
    assert flat["data.train_per_class"] == 7
    assert flat["data.source"] == "mnist-sample"
    assert flat["image.size"] == [28, 28]  # resolved, as a list
    assert all(not isinstance(value, dict) for value in flat.values())
