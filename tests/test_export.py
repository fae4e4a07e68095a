"""The export stage: each model family converted with builtin ops only, run in LiteRT and onnxruntime, byte-stable;
predict and serve answering from an exported file with the same pixels every other path decodes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import keras
import numpy as np
import pytest

from imgclf import paths
from imgclf.errors import UserError
from imgclf.inference import export, predict, runtimes
from imgclf.inference.classifier import Classifier, write_info
from imgclf.models import architectures
from imgclf.pipeline import export_report

from helpers import servers
from helpers.presets import CHAPTER
from helpers.workspace import TINY_TRAINING

CLASSES = ("a", "b", "c")


def labelled(images_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 grayscale images whose class is where a bright square sits (left, middle, right), on noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 80, size=(3 * images_per_class, 16, 16, 1), dtype=np.uint8)
    labels = np.repeat(np.arange(3), images_per_class)
    for image, label in zip(images, labels, strict=True):
        top = int(rng.integers(0, 10))
        image[top:top + 6, 1 + 5 * label:6 + 5 * label, 0] = rng.integers(180, 256)
    return images, labels


def trained(model: keras.Model) -> keras.Model:
    keras.utils.set_random_seed(0)
    images, labels = labelled(60, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="categorical_crossentropy")
    model.fit(images, keras.utils.to_categorical(labels, 3), epochs=8, batch_size=16, verbose=0)
    return model


def simple_cnn() -> keras.Model:
    return trained(architectures.build((16, 16, 1), 3, dataclasses.replace(CHAPTER, filters=(8, 16), dense_units=512)))


def saved_with_info(model: keras.Model, folder: Path) -> Path:
    """model.keras and classifier.json in `folder`, as a model stage writes them."""
    from imgclf.inference import model_file

    folder.mkdir(parents=True, exist_ok=True)
    model_file.save(model, folder / "model.keras")
    classifier = Classifier(model, CLASSES, 40_000_000)
    write_info(folder / "classifier.json", CLASSES, classifier.spec)
    return folder / "model.keras"


def exported_rows(model: keras.Model, folder: Path) -> dict[str, export_report.Row]:
    """Every format of `model` written into `folder` and scored on fresh test images, by format."""
    keras_file = saved_with_info(model, folder)
    classifier = Classifier.load(keras_file, folder / "classifier.json", "")
    calibration, _ = labelled(20, seed=2)
    failed = export.write(keras_file, folder, tuple(export.FILES), calibration, 17)
    assert failed == {}
    images, labels = labelled(40, seed=3)
    rows = export_report.score("m", folder, keras_file, classifier, images, labels, tuple(export.FILES), failed, 0)
    return {row.format: row for row in rows}


@pytest.fixture(scope="module")
def cnn_export(tmp_path_factory) -> tuple[keras.Model, Path, dict[str, export_report.Row]]:
    """A trained simple_cnn, every format of it in one folder (with model.keras and classifier.json), its scores."""
    model = simple_cnn()
    folder = tmp_path_factory.mktemp("export") / "m"
    return model, folder, exported_rows(model, folder)


def test_simple_cnn_exports_agree_with_keras_and_int8_is_small(cnn_export):
    _, _, rows = cnn_export
    assert rows["keras"].accuracy >= 0.9  # a model that learnt something, so agreement means something
    for name in ("saved_model", "tflite_float32", "onnx"):
        assert rows[name].agreement >= 0.995, (name, rows[name])
    for name in ("tflite_dynamic_int8", "tflite_int8"):
        assert rows[name].agreement >= 0.95, (name, rows[name])
        assert abs(rows[name].accuracy - rows["keras"].accuracy) <= 0.05
    assert rows["tflite_int8"].size_mb <= 0.3 * rows["keras"].size_mb
    for row in rows.values():
        assert row.timings["latency_ms_batch1"] > 0 and row.timings["peak_rss_mb"] > 0
    # The LiteRT and onnxruntime children do not load TensorFlow: far less memory than the Keras one.
    assert rows["tflite_int8"].timings["peak_rss_mb"] < rows["keras"].timings["peak_rss_mb"] / 2


def test_perceptron_exports_run_in_both_runtimes(tmp_path):
    rows = exported_rows(trained(_perceptron()), tmp_path / "m")
    for name in ("tflite_float32", "onnx", "saved_model"):
        assert rows[name].agreement == 1.0, (name, rows[name])
    assert rows["tflite_int8"].agreement >= 0.95


def _perceptron() -> keras.Model:
    """The perceptron stage's deployable shape: rescale, flatten, one softmax layer."""
    inputs = keras.Input((16, 16, 1), dtype="uint8")
    scaled = keras.layers.Rescaling(1 / 255)(keras.ops.cast(inputs, "float32"))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(scaled)))


def test_exports_are_byte_identical_when_made_again(cnn_export, tmp_path):
    _, made, _ = cnn_export
    calibration, _ = labelled(20, seed=2)
    again = tmp_path / "again"
    again.mkdir()
    assert export.write(made / "model.keras", again, tuple(export.FILES), calibration, 17) == {}

    def hashes(folder: Path) -> dict[str, str]:
        return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
                for path in sorted(folder.rglob("*")) if path.is_file() and path.name not in ("model.keras", "classifier.json")}

    assert hashes(again) == hashes(made)
    assert {"float32.tflite", "dynamic_int8.tflite", "int8.tflite", "model.onnx", "saved_model/saved_model.pb",
            "saved_model/fingerprint.pb"} <= set(hashes(again))


def test_the_tflite_files_use_builtin_ops_only(cnn_export):
    _, folder, _ = cnn_export
    from ai_edge_litert.interpreter import Interpreter

    for name in ("float32.tflite", "dynamic_int8.tflite", "int8.tflite"):
        interpreter = Interpreter(model_path=str(folder / name))
        operators = {detail["op_name"] for detail in interpreter._get_ops_details()}
        assert operators and not any(op.startswith("Flex") or op == "CUSTOM" for op in operators), operators


def test_a_model_that_cannot_be_converted_gets_a_reason_not_a_crash(cnn_export, tmp_path):
    _, made, _ = cnn_export
    failed = export.write(made / "model.keras", tmp_path, ("tflite_int8", "tflite_float32"),
                          np.zeros((0, 16, 16, 1), np.uint8), 17)
    assert list(failed) == ["tflite_int8"]
    assert "calibration images" in failed["tflite_int8"] and "\n" not in failed["tflite_int8"]
    assert (tmp_path / "float32.tflite").is_file()
    assert not (tmp_path / "saved_model").exists()  # made for the conversion, not asked for


def test_predict_from_tflite_and_onnx_files_gives_keras_labels(cnn_export, tmp_path, capsys):
    _, folder, _ = cnn_export
    from PIL import Image

    images, _ = labelled(5, seed=4)
    files = tmp_path / "images"
    files.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(files / f"{index:02d}.png")
    answers = {}
    for name in ("model.keras", "float32.tflite", "int8.tflite", "model.onnx", "saved_model"):
        assert predict.main([str(files)], str(folder / name), 3, "json", 4, "imgclf") == 0
        answers[name] = json.loads(capsys.readouterr().out)
    labels = {name: [found["predictions"][0]["label"] for found in answer] for name, answer in answers.items()}
    assert labels["float32.tflite"] == labels["model.keras"] == labels["model.onnx"] == labels["saved_model"]
    assert sum(a == b for a, b in zip(labels["int8.tflite"], labels["model.keras"], strict=True)) >= 14
    # The same decoded pixels reach every runtime: float32 probabilities equal Keras' to float rounding.
    for first, second in zip(answers["model.keras"], answers["float32.tflite"], strict=True):
        for mine, theirs in zip(first["predictions"], second["predictions"], strict=True):
            assert mine["label"] == theirs["label"] and abs(mine["probability"] - theirs["probability"]) < 1e-4


def test_a_model_file_without_its_class_names_or_runtime_is_one_line(tmp_path, monkeypatch):
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(b"not onnx")
    with pytest.raises(UserError, match=r"classifier.json: not found|cannot load it"):
        predict.load_model(str(lone), "imgclf")
    (tmp_path / "classifier.json").write_text(json.dumps({"class_names": list(CLASSES), "image_size": [16, 16],
                                                           "color_mode": "grayscale", "max_image_pixels": 40_000_000}))
    with pytest.raises(UserError, match=r"^.*lone.onnx: onnxruntime cannot load it"):
        predict.load_model(str(lone), "imgclf")
    with pytest.raises(UserError, match=r"not a model file"):
        runtimes.open_file(tmp_path / "classifier.json", "")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "onnxruntime" else real(name, *rest))
    with pytest.raises(UserError, match=r"needs the export extra \(onnxruntime is not installed\)"):
        runtimes.open_file(lone, "")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["int8.tflite", "model.onnx"])
def test_serve_answers_from_an_exported_file_and_survives_bad_requests(cnn_export, tmp_path, name):
    _, folder, _ = cnn_export
    from PIL import Image

    images, labels = labelled(4, seed=5)
    encoded = []
    for image in images:
        path = tmp_path / "image.png"
        Image.fromarray(image[..., 0]).save(path)
        encoded.append(base64.b64encode(path.read_bytes()).decode())
    port = servers.free_port()
    server = servers.start([sys.executable, "-m", "imgclf", "serve", "--model", str(folder / name), "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        servers.wait_until_up(url, server)

        def post(rows: list) -> tuple[int, dict]:
            body = json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()
            request = Request(url + "/invocations", body, {"Content-Type": "application/json"})
            try:
                with urlopen(request, timeout=60) as answer:
                    return answer.status, json.loads(answer.read())
            except HTTPError as error:
                return error.code, json.loads(error.read() or b"{}")

        status, answer = post([[value] for value in encoded])
        assert status == 200
        served = [row["label"] for row in answer["predictions"]]
        expected = [CLASSES[index] for index in Classifier.load(folder / name, folder / "classifier.json", "")
                    .probabilities(images).argmax(axis=1)]
        assert served == expected
        status, answer = post([["not base64!"]])
        assert status == 400 and "row 0" in answer["message"]
        assert post([[encoded[0]]])[0] == 200  # still serving
    finally:
        servers.stop(server)


@pytest.mark.slow
def test_export_stage_exports_the_champion_byte_stably(tiny_training, run_stage_script, write_params, workspace):
    tiny_training({"export.calibration_images": 10})
    for name in ("perceptron", "baseline", "report"):
        run_stage_script(name)
    champion = export_report.chosen_stages("champion")[0]
    run_stage_script("export")
    found = json.loads(paths.metrics_file("export").read_text())
    assert list(found["stages"]) == [champion]
    formats = found["stages"][champion]
    assert set(formats) == {"keras", *export.FILES}
    assert all("error" not in entry for entry in formats.values()), formats
    assert formats["tflite_float32"]["agreement"] >= 0.995 and formats["onnx"]["agreement"] >= 0.995
    assert formats["keras"]["accuracy"] == json.loads(paths.metrics_file(champion).read_text())["accuracy"]
    assert (paths.EXPORTS / champion / "classifier.json").is_file()
    assert "| tflite_int8" in export_report.REPORT_FILE.read_text()
    before = {path: path.read_bytes() for path in sorted(paths.EXPORTS.rglob("*")) if path.is_file()}
    write_params(TINY_TRAINING | {"export.calibration_images": 10, "export.stages": "all"})
    run_stage_script("export")
    assert set(json.loads(paths.metrics_file("export").read_text())["stages"]) == {"perceptron", "baseline"}
    after = {path: path.read_bytes() for path in sorted(paths.EXPORTS.rglob("*")) if path.is_file()}
    assert {path: data for path, data in after.items() if path in before} == before


@pytest.mark.slow
def test_a_backbone_with_its_head_exports_and_agrees(with_features, run_stage_script, workspace):
    """top's classifier: VGG16 (weights none, 32x32) with grayscale-to-RGB, resizing and its preprocessing inside,
    and the dense head, converted whole."""
    with_features({"top.epochs": 2})
    run_stage_script("top")
    folder = workspace / "exported"
    folder.mkdir()
    classifier = Classifier.load(paths.model_file("top"), paths.classifier_info("top"), "")
    files = sorted((workspace / "data" / "split" / "test").glob("*/*.png"))
    images, labels = export_report.split_images(classifier, files), export_report.labels_of(classifier, files)
    calibration = export_report.split_images(classifier, export_report.calibration_files(10, 0))
    failed = export.write(paths.model_file("top"), folder, tuple(export.FILES), calibration, 17)
    assert failed == {}
    rows = {row.format: row for row in export_report.score("top", folder, paths.model_file("top"), classifier, images,
                                                           labels, tuple(export.FILES), failed, 0)}
    for name in ("saved_model", "tflite_float32", "onnx"):
        assert rows[name].agreement == 1.0, (name, rows[name])
    assert rows["tflite_int8"].size_mb <= 0.3 * rows["keras"].size_mb
    assert rows["tflite_int8"].agreement >= 0.8, rows["tflite_int8"]  # 18 images of a barely trained head
