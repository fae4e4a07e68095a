"""What a model stage gets wrong: its most confidently wrong test images per class, and where it looked.

plots/<stage>/mistakes.png: for each true class, up to `mistakes.per_class` test images the model got
wrong, most confident first (true class -> predicted class, probability). plots/<stage>/gradcam.png: the
same images under the Grad-CAM map of the class the model predicted (models with convolutions). Both are
DVC image plots, drawn with Pillow only, so the same predictions give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imgclf import atomic, paths
from imgclf.data import decode, tfdata
from imgclf.inference import explain

TILE = 84  # pixels of the longer side of each image in a gallery
CAPTION = 26  # pixels of text under each image
MARGIN = 6


@dataclass(frozen=True)
class Mistake:
    """One wrong test prediction: its row in the test data, true and predicted class, the predicted probability."""

    index: int
    actual: int
    predicted: int
    probability: float


def worst(labels: np.ndarray, probabilities: np.ndarray, per_class: int) -> list[Mistake]:
    """Per true class (in class order), its `per_class` wrong predictions with the highest probability."""
    predicted = probabilities.argmax(axis=1)
    found = []
    for actual in range(probabilities.shape[1]):
        wrong = np.flatnonzero((labels == actual) & (predicted != actual))
        ranked = sorted(wrong, key=lambda index: (-probabilities[index, predicted[index]], index))
        found += [Mistake(int(index), actual, int(predicted[index]), float(probabilities[index, predicted[index]]))
                  for index in ranked[:per_class]]
    return found


def write(stage: str, model: keras.Model, spec: decode.ImageSpec, labels: np.ndarray, probabilities: np.ndarray,
          class_names: Sequence[str], per_class: int) -> list[Path]:
    """plots/<stage>/mistakes.png and, for a model with convolutions, gradcam.png; the files written."""
    files = tfdata.test_files()
    shown = [file.label for file in files]
    if shown != [class_names[label] for label in labels]:
        raise RuntimeError(f"{stage}: the test files' classes do not match the test labels' order")
    chosen = worst(labels, probabilities, per_class)
    images = np.stack([decode.pixels(files[item.index].read_bytes(), spec, files[item.index].name) for item in chosen]) \
        if chosen else np.zeros((0, spec.height, spec.width, spec.channels), np.uint8)
    captions = [f"{class_names[item.actual]} -> {class_names[item.predicted]}\n{item.probability:.2f}" for item in chosen]
    title = f"{stage}: most confidently wrong test images per class (true -> predicted, probability)"
    written = [paths.plots_dir(stage) / "mistakes.png"]
    _save(written[0], _gallery(title, images, captions, [item.actual for item in chosen], per_class))
    if explain.target_layer(model) is not None:  # a model with a convolution: where it looked
        overlays = images
        if chosen:
            cams = explain.gradcam(model, images, np.array([item.predicted for item in chosen], dtype=np.int32))
            overlays = np.stack([explain.overlay(image, cam) for image, cam in zip(images, cams, strict=True)])
        written.append(paths.plots_dir(stage) / "gradcam.png")
        _save(written[1], _gallery(f"{stage}: Grad-CAM of the predicted class on the same images", overlays, captions,
                                   [item.actual for item in chosen], per_class))
    return written


def _tile(image: np.ndarray) -> Image.Image:
    """An image scaled for a gallery: small ones by a whole factor (pixels stay sharp), large ones down."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB")
    longer = max(picture.size)
    if longer <= TILE:
        factor = max(1, TILE // longer)
        return picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
    scale = TILE / longer
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                          Image.Resampling.BILINEAR)


def _gallery(title: str, images: np.ndarray, captions: list[str], rows: list[int], per_class: int) -> Image.Image:
    """A grid: one row per true class that has mistakes, its images left to right, a caption under each."""
    font = ImageFont.load_default()
    tiles = [_tile(image) for image in images]
    order = sorted(set(rows))
    cell_w = max([tile.width for tile in tiles] + [TILE]) + MARGIN
    cell_h = max([tile.height for tile in tiles] + [TILE]) + CAPTION + MARGIN
    width = max(MARGIN + cell_w * max(per_class, 1), 8 * len(title) + 2 * MARGIN)
    height = 20 + cell_h * max(len(order), 1) + MARGIN
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((MARGIN, 4), title, fill="black", font=font)
    if not tiles:
        draw.text((MARGIN, 24), "no wrong test images", fill="black", font=font)
    column: dict[int, int] = {}
    for tile, caption, row in zip(tiles, captions, rows, strict=True):
        x = MARGIN + cell_w * column.get(row, 0)
        y = 20 + cell_h * order.index(row)
        column[row] = column.get(row, 0) + 1
        sheet.paste(tile, (x, y))
        draw.multiline_text((x, y + tile.height + 2), caption, fill="black", font=font, spacing=1)
    return sheet


def _save(target: Path, picture: Image.Image) -> None:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")  # Pillow writes no time or version chunk: same pixels, same bytes
    atomic.write_bytes(target, buffer.getvalue())
