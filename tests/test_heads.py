"""Several softmax heads (data.label_columns): a CSV with two label columns through download, split,
baseline and augmented; per-head metrics, their mean on the leaderboard, the joined model predicted and served."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgclf import paths
from imgclf.errors import UserError
from imgclf.inference import predict, serving
from imgclf.inference.classifier import Classifier
from imgclf.pipeline import report

from helpers.workspace import STAGE_RUNS, TINY_TRAINING, pattern_image

OWN = {"image.size": [16, 16], "data.train_per_class": "all", "data.test_per_class": "all",
       "data.test_fraction": 0.25, "data.validation_fraction": 0.2}
PATTERNS = ("dots", "plain", "stripes")
COLORS = ("dark", "light")


def clothing(root: Path, count: int = 48, columns: tuple[str, str] = ("pattern", "color")) -> Path:
    """A labels CSV with two learnable attributes: the bar's position (pattern) and the brightness (color)."""
    root.mkdir(parents=True)
    rows = [f"path,{columns[0]},{columns[1]}"]
    for index in range(count):
        pattern, color = index % 3, (index // 3) % 2
        pixels = np.asarray(pattern_image(pattern, index, (20, 20), rgb=True), dtype=np.int32)
        pixels = np.clip(pixels + (90 if color else 0), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"item{index:03d}.png")
        rows.append(f"item{index:03d}.png,{PATTERNS[pattern]},{COLORS[color]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


@pytest.fixture
def two_heads(tmp_path, workspace, mlflow_store, write_params, run_stage_script):
    csv = clothing(tmp_path / "clothes")
    write_params(TINY_TRAINING | OWN | {"data.source": "csv", "data.path": str(csv), "data.label_columns": ["pattern", "color"],
                                        "image.color_mode": "rgb", "baseline.epochs": 3, "cnn.layout": "photo"})
    run_stage_script("download")
    run_stage_script("split")
    return csv


def test_baseline_trains_a_head_per_column_and_ranks_by_their_mean(two_heads, run_stage_script, workspace):
    run_stage_script("baseline")
    metrics = json.loads((workspace / "metrics" / "baseline.json").read_text())
    assert set(metrics["heads"]) == {"pattern", "color"}
    assert set(metrics["heads"]["pattern"]["per_class"]) == set(PATTERNS)
    assert set(metrics["heads"]["color"]["per_class"]) == set(COLORS)
    mean = (metrics["heads"]["pattern"]["accuracy"] + metrics["heads"]["color"]["accuracy"]) / 2
    assert metrics["accuracy"] == pytest.approx(mean, abs=1e-6)  # metrics files hold 6 decimals
    assert metrics["loss"] == pytest.approx(metrics["heads"]["pattern"]["loss"] + metrics["heads"]["color"]["loss"], abs=1e-5)
    (row,) = [row for row in report.rows_from_files() if row["stage"] == "baseline"]
    assert row["accuracy"] == metrics["accuracy"]
    history = pd.read_csv(workspace / "plots" / "baseline" / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    # One confusion matrix (a DVC plot) for both heads, a block each: only what dvc.yaml declares is written.
    plots = {path.name for path in (workspace / "plots" / "baseline").iterdir()}
    assert plots == {"confusion.csv", "confusion.png", "history.csv", "learning_curves.png", "mistakes.png", "gradcam.png"}
    confusion = pd.read_csv(workspace / "plots" / "baseline" / "confusion.csv")
    assert len(confusion) == 2 * (pd.read_csv(workspace / paths.MANIFEST)["split"] == "test").sum()
    assert set(confusion["actual"]) == {f"pattern={name}" for name in PATTERNS} | {f"color={name}" for name in COLORS}
    heads_of = confusion.map(lambda label: label.split("=")[0])
    assert (heads_of["actual"] == heads_of["predicted"]).all()

    # The saved model: one output, the heads side by side, and classifier.json says whose columns are whose.
    info = json.loads(paths.classifier_info("baseline").read_text())
    assert info["heads"] == [{"column": "pattern", "class_names": list(PATTERNS)}, {"column": "color", "class_names": list(COLORS)}]
    assert info["class_names"] == list(PATTERNS)
    classifier = Classifier.load(paths.model_file("baseline"), paths.classifier_info("baseline"), "")
    manifest = pd.read_csv(workspace / paths.MANIFEST, dtype=str, keep_default_na=False)
    test = manifest[manifest["split"] == "test"]
    outcomes = list(classifier.classify_files([workspace / "data" / "split" / path for path in test["path"]]))
    scores = np.stack([outcome.probabilities for outcome in outcomes])
    np.testing.assert_allclose(scores[:, :3].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores[:, 3:].sum(axis=1), 1.0, atol=1e-5)
    color_hits = np.mean(np.array(COLORS)[scores[:, 3:].argmax(axis=1)] == test["color"].to_numpy())
    assert color_hits == pytest.approx(metrics["heads"]["color"]["accuracy"], abs=1e-6)

    # Served: per head its label, probability and one column per class.
    served = serving.rows(classifier, scores[:2])
    assert list(served.columns) == ["pattern", "pattern_probability", *[f"pattern={name}" for name in PATTERNS],
                                    "color", "color_probability", *[f"color={name}" for name in COLORS]]
    image = workspace / "data" / "split" / test["path"].iloc[0]
    request = pd.DataFrame({serving.IMAGE_COLUMN: [base64.b64encode(image.read_bytes()).decode()]})
    model = serving.ServedClassifier()
    model.classifier = classifier
    answer = model.predict(None, request)
    assert answer["color"].iloc[0] in COLORS and answer["pattern"].iloc[0] in PATTERNS


def test_predict_shows_each_head(two_heads, run_stage_script, workspace, capsys):
    run_stage_script("baseline")
    capsys.readouterr()  # the stage's own output
    folder = str(workspace / "data" / "split" / "test")
    assert predict.main([folder], "baseline", 2, "json", 32, "imgclf") == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results[0]["predictions"]) == {"pattern", "color"} and len(results[0]["predictions"]["color"]) == 2
    assert predict.main([folder], "baseline", 1, "csv", 32, "imgclf") == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "path,pattern,pattern_probability,color,color_probability"
    with pytest.raises(UserError, match=r"--top-k 3: the model has 2 classes in head color"):
        predict.main([folder], "baseline", 3, "table", 32, "imgclf")


def test_augmented_trains_the_heads_too_and_single_head_stages_use_the_first_column(two_heads, run_stage_script,
                                                                                   workspace):
    run_stage_script("augmented")
    assert set(json.loads((workspace / "metrics" / "augmented.json").read_text())["heads"]) == {"pattern", "color"}
    run_stage_script("perceptron")  # one head: the class folders, the first label column
    perceptron = json.loads((workspace / "metrics" / "perceptron.json").read_text())
    assert "heads" not in perceptron and set(perceptron["per_class"]) == set(PATTERNS)


def test_balanced_class_weights_need_one_label_column(two_heads, write_params, run_stage_script, capsys):
    write_params(TINY_TRAINING | OWN | {"data.source": "csv", "data.path": str(two_heads),
                                        "data.label_columns": ["pattern", "color"], "image.color_mode": "rgb",
                                        "baseline.class_weight": "balanced"})
    with pytest.raises(SystemExit) as exited:
        run_stage_script("baseline")
    assert exited.value.code == 2
    assert ("imgclf: baseline.class_weight: balanced weighs one label column's classes, and data.label_columns has 2: "
            "use none") in capsys.readouterr().err


def test_finetune_puts_a_head_per_column_on_the_backbone(two_heads, write_params, run_stage_script, workspace):
    write_params(TINY_TRAINING | OWN | {"data.source": "csv", "data.path": str(two_heads), "image.color_mode": "rgb",
                                        "data.label_columns": ["pattern", "color"], "bottleneck.batch_size": 8,
                                        "top.epochs": 1, "top.batch_size": 8, "finetune.batch_size": 8})
    for stage in ("bottleneck", "top", "finetune"):
        run_stage_script(stage)
    metrics = json.loads((workspace / "metrics" / "finetune.json").read_text())
    assert set(metrics["heads"]) == {"pattern", "color"} and metrics["frozen_layers"] == 14
    model = Classifier.load(paths.model_file("finetune"), paths.classifier_info("finetune"), "")
    assert [column for column, _, _ in model.groups()] == ["pattern", "color"]
    top = json.loads((workspace / "metrics" / "top.json").read_text())
    assert "heads" not in top and set(top["per_class"]) == set(PATTERNS)  # top trains on the first column


def test_the_csv_must_hold_every_label_column(tmp_path, workspace, mlflow_store, write_params, run_stage_script, capsys):
    csv = clothing(tmp_path / "clothes", count=12, columns=("pattern", "colour"))
    write_params(TINY_TRAINING | OWN | {"data.source": "csv", "data.path": str(csv), "data.label_columns": ["pattern", "color"]})
    with pytest.raises(SystemExit):
        run_stage_script("download")
    assert ("the CSV has no color column (its columns: path, pattern, colour): give it a path column and the label "
            "columns data.label_columns names (pattern, color)") in capsys.readouterr().err


def test_the_logged_classifier_serves_each_head(two_heads, write_params, run_stage_script, workspace):
    import mlflow
    from mlflow.tracking import MlflowClient

    write_params(TINY_TRAINING | OWN | {"data.source": "csv", "data.path": str(two_heads), "image.color_mode": "rgb",
                                        "data.label_columns": ["pattern", "color"], "mlflow.log_model": True})
    run_stage_script("baseline")
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                f"{STAGE_RUNS} and tags.`dvc.stage` = 'baseline'")
    model = mlflow.pyfunc.load_model(f"models:/{run.data.tags['imgclf.classifier_model_id']}")
    outputs = [spec.name for spec in model.metadata.get_output_schema().inputs]
    assert outputs[:2] == ["pattern", "pattern_probability"] and "color=light" in outputs
    image = sorted((workspace / "data" / "split" / "test").rglob("*.png"))[0]
    answer = model.predict(pd.DataFrame({serving.IMAGE_COLUMN: [base64.b64encode(image.read_bytes()).decode()]}))
    assert list(answer.columns) == outputs and answer["color"].iloc[0] in COLORS
