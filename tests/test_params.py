"""params.yaml validation: every kind of bad value gives one line `imgclf: params.yaml: ...`, exit 2.

Each case is checked twice: through `params.load` (the function every stage calls) and through
the real split stage script in a subprocess, so the exit code and stderr are what a user sees.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from imgclf import params
from imgclf.data.catalog import SOURCES
from imgclf.errors import UserError

from helpers.bad_params import CASES
from helpers.workspace import stage_argv

ONE_LINE = re.compile(r"^imgclf: params\.yaml: (?P<key>[\w.]+) = (?P<value>.*): (?P<allowed>.+)$")


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
    """The concrete values the docs promise (recipes.md), not just 'whatever the catalog says'."""
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


def test_what_dvc_writes_for_a_small_number_is_a_number(workspace: Path) -> None:
    """`dvc exp run -S perceptron.learning_rate=1e-7` writes `1e-07` (YAML 1.2); YAML 1.1 would read a string."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(workspace / "params.yaml", ["perceptron.learning_rate=1e-7", "augmentation.horizontal_flip=true"])
    assert "learning_rate: 1e-07" in (workspace / "params.yaml").read_text()
    loaded = params.load(workspace / "params.yaml")
    assert loaded.perceptron.learning_rate == 1e-07
    assert loaded.augmentation.horizontal_flip is True  # a bool choice takes a bool
