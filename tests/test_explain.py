"""Grad-CAM where the evidence is known: a small striped mark anywhere decides the class, and the map finds it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.inference import explain
from imgclf.models import architectures

from helpers.presets import CHAPTER

SIDE, MARK, MARGIN = 32, 6, 2


def marked(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey noise with one 6x6 mark anywhere: horizontal stripes for class 0, vertical for 1. (images, labels, boxes)"""
    rng = np.random.default_rng(seed)
    images = rng.integers(64, 192, size=(count, SIDE, SIDE, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, size=count)
    boxes = []
    for image, label in zip(images, labels, strict=True):
        top, left = (int(value) for value in rng.integers(0, SIDE - MARK, size=2))
        stripes = np.zeros((MARK, MARK), np.uint8)
        if label:
            stripes[:, ::2] = 255
        else:
            stripes[::2, :] = 255
        image[top:top + MARK, left:left + MARK, 0] = stripes
        boxes.append((top, left))
    return images, labels, np.array(boxes)


def share_on_mark(cams: np.ndarray, boxes: np.ndarray) -> float:
    """The mean share of each map's mass within its mark (and MARGIN pixels around it)."""
    shares = []
    for cam, (top, left) in zip(cams, boxes, strict=True):
        window = cam[max(0, top - MARGIN):top + MARK + MARGIN, max(0, left - MARGIN):left + MARK + MARGIN]
        shares.append(window.sum() / max(cam.sum(), 1e-9))
    return float(np.mean(shares))


def trained_cnn(shuffle_labels: bool) -> keras.Model:
    """The chapter's CNN (small) trained on marked images; with shuffled labels it cannot learn the marks."""
    keras.utils.set_random_seed(0)
    model = architectures.build((SIDE, SIDE, 1), 2, dataclasses.replace(CHAPTER, filters=(8, 16), dense_units=32))
    images, labels, _ = marked(800, seed=1)
    if shuffle_labels:
        labels = np.random.default_rng(5).permutation(labels)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, keras.utils.to_categorical(labels, 2), epochs=6, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def models():
    return trained_cnn(shuffle_labels=False), trained_cnn(shuffle_labels=True)


def test_the_map_lies_on_the_mark_of_a_model_that_learned_it_and_not_otherwise(models):
    learned, guessed = models
    images, labels, boxes = marked(100, seed=2)
    assert float(np.mean(learned.predict(images, verbose=0).argmax(axis=1) == labels)) >= 0.95
    assert float(np.mean(guessed.predict(images, verbose=0).argmax(axis=1) == labels)) <= 0.65
    even = (MARK + 2 * MARGIN) ** 2 / SIDE**2  # a map spread evenly puts 0.10 on the mark
    on_learned = share_on_mark(explain.gradcam(learned, images, labels), boxes)
    on_guessed = share_on_mark(explain.gradcam(guessed, images, labels), boxes)
    print(f"Grad-CAM mass on the mark: learned {on_learned:.2f}, shuffled labels {on_guessed:.2f}, even {even:.2f}")
    assert on_learned >= 0.45 and on_learned >= 1.5 * on_guessed
    assert on_guessed <= 0.35


def test_overlay_and_what_has_no_map(models):
    learned, _ = models
    images, labels, _ = marked(3, seed=3)
    cams = explain.gradcam(learned, images, labels)
    assert cams.shape == (3, SIDE, SIDE) and cams.min() >= 0 and 0.9 <= cams.max() <= 1.0
    shown = explain.overlay(images[0], cams[0])
    assert shown.shape == (SIDE, SIDE, 3) and shown.dtype == np.uint8
    dense = keras.Sequential([keras.Input((SIDE, SIDE, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    assert explain.target_layer(dense) is None and explain.gradcam(dense, images, labels) is None


def test_explain_a_real_jpeg_and_a_png_with_a_stage_model(tiny_training, run_stage_script, workspace, tmp_path, capsys):
    import json

    from PIL import Image
    from skimage import data as skimage_data

    from imgclf import cli

    tiny_training({"baseline.epochs": 1})
    run_stage_script("baseline")
    run_stage_script("perceptron")
    capsys.readouterr()
    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(skimage_data.chelsea()).save(photo, quality=90)  # a real cat photo, 451 x 300
    digit = next((workspace / "data" / "split" / "test").rglob("*.png"))
    out = tmp_path / "explained"

    with pytest.raises(SystemExit) as done:
        cli.main(["explain", str(photo), str(digit), "--model", "baseline", "--out", str(out), "--top-k", "2"])
    assert done.value.code == 0
    results = json.loads(capsys.readouterr().out)
    assert [Path(result["path"]).name for result in results] == ["chelsea.jpg", digit.name]
    for result in results:
        assert len(result["predictions"]) == 2 and result["predictions"][0]["probability"] >= result["predictions"][1]["probability"]
        with Image.open(result["gradcam"]) as overlay:
            assert overlay.format == "PNG" and overlay.mode == "RGB" and min(overlay.size) >= 224  # 16 px x 14

    with pytest.raises(SystemExit) as done:
        cli.main(["explain", str(digit), "--model", "perceptron", "--out", str(tmp_path / "none")])
    assert done.value.code == 0
    captured = capsys.readouterr()
    assert "has no convolution: top-k only" in captured.err and "gradcam" not in captured.out

    (tmp_path / "broken.jpg").write_bytes(photo.read_bytes()[:2000])
    with pytest.raises(SystemExit) as done:
        cli.main(["explain", str(tmp_path / "broken.jpg"), "--model", "baseline", "--out", str(out)])
    assert done.value.code == 1 and "broken.jpg: corrupt or truncated" in capsys.readouterr().err
