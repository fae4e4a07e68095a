"""Using a trained model: the decode that matches training's pixels, `predict`, and top's composed classifier."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf import cli, paths
from imgclf.data import decode, images, tfdata

SIZES = [(16, 16), (23, 31), (40, 12)]
FILES = [(".png", SIZES[0]), (".jpg", SIZES[1]), (".bmp", SIZES[2]), (".gif", SIZES[1]), (".webp", SIZES[0])]


def raw_files(folder: Path, rgb: bool, rng: np.random.Generator) -> list[Path]:
    """Image files as a user has them: PNG, JPEG, BMP, GIF, WebP, one JPEG turned by its EXIF tag."""
    folder.mkdir(parents=True)
    written = []
    for index, (suffix, size) in enumerate(FILES):
        image = Image.fromarray(rng.integers(0, 256, size=(*size, 3) if rgb else size, dtype=np.uint8))
        written.append(folder / f"{index}{suffix}")
        image.save(written[-1])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    written.append(folder / "rotated.jpg")
    Image.fromarray(rng.integers(0, 256, size=(*SIZES[2], 3), dtype=np.uint8)).save(written[-1], exif=exif)
    return written


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb"])
def test_predict_decodes_a_raw_file_as_training_reads_its_split_copy(color_mode, workspace, write_params):
    rgb = color_mode == "rgb"
    rng = np.random.default_rng(7)
    originals = {}
    for split in paths.SPLITS:
        for name in ("a", "b"):
            for raw in raw_files(workspace / "raw" / split / name, rgb, rng):
                # What the split stage writes for it: images.check's bytes, under its suffix.
                checked = images.check(raw.name, raw.read_bytes(), rgb=rgb, non_rgb="convert", max_pixels=10**6)
                assert not checked.reason, checked.reason
                target = workspace / "data" / "split" / split / name / (raw.stem + checked.suffix)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(checked.data)
                originals[target] = raw
    params = write_params({"image.size": [20, 24], "image.color_mode": color_mode})
    dataset, _, count = tfdata.load_ordered(params, "test", batch_size=100)
    trained_on = next(iter(dataset))[0].numpy()
    split_files = sorted((workspace / "data" / "split" / "test").glob("*/*"), key=lambda path: (path.parent.name, path.name))
    spec = decode.ImageSpec(20, 24, 3 if rgb else 1, 10**6)
    decoded = np.stack([decode.pixels(originals[path].read_bytes(), spec, originals[path].name) for path in split_files])
    assert count == len(split_files) == 12
    np.testing.assert_array_equal(decoded, trained_on)  # bit for bit: every format, size, EXIF turn


def test_decode_refuses_what_the_split_refuses():
    spec = decode.ImageSpec(8, 8, 3, 1000)
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50)).save(buffer, format="PNG")
    with pytest.raises(decode.UnreadableImage, match="too large"):
        decode.pixels(buffer.getvalue(), spec)  # 2,500 pixels > max_pixels
    with pytest.raises(decode.UnreadableImage, match="not a decodable image"):
        decode.pixels(b"hello, not an image", spec)
    with pytest.raises(decode.UnreadableImage, match="name says .jpg"):
        decode.pixels(buffer.getvalue(), decode.ImageSpec(8, 8, 3, 10**6), "photo.jpg")
    assert decode.pixels(buffer.getvalue(), decode.ImageSpec(8, 8, 3, 10**6)).shape == (8, 8, 3)


def predict(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what ran before
    with pytest.raises(SystemExit) as ended:
        cli.main(["predict", *args])
    captured = capsys.readouterr()
    return ended.value.code, captured.out, captured.err


def assert_reproduces_test_metrics(stage: str, workspace: Path, capsys) -> None:
    """predict on data/split/test gives the stage's test accuracy and confusion matrix."""
    code, out, err = predict(capsys, "data/split/test", "--model", stage, "--format", "csv", "--batch-size", "7")
    assert code == 0, err
    predicted = list(csv.DictReader(io.StringIO(out)))
    metrics = json.loads(paths.metrics_file(stage).read_text())
    assert len(predicted) == metrics["test_images"]
    actual = [Path(row["path"]).parent.name for row in predicted]
    accuracy = np.mean([row["label"] == truth for row, truth in zip(predicted, actual, strict=True)])
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-6)
    with (paths.plots_dir(stage) / "confusion.csv").open() as stream:
        confusion = Counter((row["actual"], row["predicted"]) for row in csv.DictReader(stream))
    assert Counter(zip(actual, (row["label"] for row in predicted), strict=True)) == confusion


def test_predict_reproduces_the_baseline_test_metrics(tiny_training, run_stage_script, workspace, capsys):
    tiny_training({"baseline.epochs": 2})
    run_stage_script("baseline")
    described = json.loads(paths.classifier_info("baseline").read_text())
    assert described == {"class_names": ["a", "b", "c"], "color_mode": "grayscale", "image_size": [16, 16],
                         "max_image_pixels": 40000000}
    assert_reproduces_test_metrics("baseline", workspace, capsys)


def test_predict_reproduces_tops_metrics_through_the_composed_model(make_split, write_params, run_stage_script,
                                                                     workspace, capsys):
    make_split(train=12, test=6, size=(16, 16))
    write_params({"image.size": [16, 16], "data.validation_fraction": 0.2, "top.epochs": 3, "top.batch_size": 8,
                  "mlflow.log_model": False})
    run_stage_script("bottleneck")
    run_stage_script("top")
    assert_reproduces_test_metrics("top", workspace, capsys)


def test_predict_reports_bad_files_and_classifies_the_rest(tiny_training, run_stage_script, workspace, capsys):
    tiny_training()
    run_stage_script("perceptron")
    good = sorted((workspace / "data" / "split" / "test" / "a").glob("*.png"))[:2]
    broken = workspace / "broken.jpg"
    broken.write_bytes(good[0].read_bytes()[:40])  # a PNG's first bytes, named .jpg
    truncated = workspace / "truncated.png"
    truncated.write_bytes(good[1].read_bytes()[:-30])
    code, out, err = predict(capsys, str(good[0]), str(broken), str(truncated), str(good[1]), "missing.png",
                             "--model", "perceptron", "--top-k", "2", "--format", "json")
    assert code == 1
    results = json.loads(out)
    assert [Path(result["path"]).name for result in results] == [good[0].name, good[1].name]
    assert all(len(result["predictions"]) == 2 for result in results)
    probabilities = [entry["probability"] for entry in results[0]["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-6
    lines = [line for line in err.splitlines() if line.startswith("imgclf: ")]
    assert len(lines) == 3, err
    assert any("broken.jpg" in line for line in lines) and any("truncated.png: corrupt or truncated" in line for line in lines)
    assert any("missing.png: not found" in line for line in lines)
    assert "2 images classified by models/perceptron, 3 failed" in err

    code, out, _ = predict(capsys, str(good[0]), "--model", "perceptron")  # table, the default
    assert code == 0 and out.split()[:2] == ["path", "label"] and str(good[0]) in out


@pytest.mark.parametrize("arguments, message", [
    (["--model", "nonsense"], "--model nonsense: give best, a stage"),
    (["--model", "perceptron", "--top-k", "0"], "--top-k 0: must be at least 1"),
    (["--model", "perceptron", "--top-k", "9"], "--top-k 9: the model has 3 classes"),
    (["--model", "augmented"], "models/augmented/model.keras: not found: run the augmented stage first"),
    (["--model", "best"], "no registered model 'imgclf' with alias 'champion'"),
])
def test_predict_bad_arguments_exit_2(arguments, message, tiny_training, run_stage_script, mlflow_store, capsys):
    tiny_training()
    run_stage_script("perceptron")
    code, _, err = predict(capsys, "data/split/test", *arguments)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("most, least, budget_s, expected", [
    (10, 1, 0.25, 2),  # a third 0.1 s call would end at 0.3 s: not started
    (10, 4, 0.25, 4),  # at least `least`, whatever the budget
    (10, 1, 0.15, 1),  # one call, never a second that ends past the budget
    (3, 1, 10.0, 3),  # at most `most`
])
def test_timed_calls_stop_before_a_call_would_end_past_the_budget(most, least, budget_s, expected) -> None:
    from imgclf.inference.measure import timed_calls as _timed_calls

    now = [0.0]  # a clock that only the calls advance, 0.1 s each: the rule, not the machine's timing

    def call() -> None:
        now[0] += 0.1

    seconds = _timed_calls(call, most, least, budget_s, clock=lambda: now[0])
    assert len(seconds) == expected
    assert seconds == pytest.approx([0.1] * expected)
