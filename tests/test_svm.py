"""svm: the chapter's linear SVM as a model of its own: calibrated, its Keras twin, saved, served, on the leaderboard."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from imgclf import paths
from imgclf.errors import UserError
from imgclf.inference import model_file
from imgclf.inference.classifier import Classifier
from imgclf.params import SvmParams
from imgclf.pipeline import report
from imgclf.transfer import svm

from helpers.workspace import STAGE_RUNS

CONFIG = SvmParams(c=1.0, class_weight="none", calibration_folds=3)


def blobs(classes: int, per_class: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, 6))
    labels = np.repeat(np.arange(classes), per_class)
    return (centers[labels] + rng.normal(size=(len(labels), 6))).reshape(-1, 1, 2, 3).astype("float32"), labels


@pytest.mark.parametrize("classes", [2, 3])
def test_the_keras_twin_gives_the_calibrated_svms_probabilities(classes):
    features, labels = blobs(classes)
    model, fitted = svm.fit(features[::2], labels[::2], CONFIG, seed=0)
    assert fitted.history == {} and fitted.images == len(labels[::2]) and fitted.seconds > 0
    expected = model.predict_proba(features[1::2].reshape(len(features[1::2]), -1))
    twin = svm.as_keras(model, (1, 2, 3))
    np.testing.assert_allclose(twin.predict(features[1::2], verbose=0), expected, atol=1e-5)
    assert np.mean(expected.argmax(axis=1) == labels[1::2]) > 0.9


def test_the_skops_file_is_byte_stable_and_loads_only_what_it_should():
    features, labels = blobs(3)
    model, _ = svm.fit(features, labels, CONFIG, seed=0)
    data = svm.to_bytes(model)
    assert data == svm.to_bytes(svm.fit(features, labels, CONFIG, seed=0)[0])  # the same model, the same bytes
    loaded = svm.from_bytes(data, "svm.skops")
    flat = features.reshape(len(features), -1)
    np.testing.assert_array_equal(loaded.predict_proba(flat), model.predict_proba(flat))
    import skops.io
    from sklearn.ensemble import IsolationForest
    from sklearn.utils import Bunch

    foreign = skops.io.dumps(Bunch(model=IsolationForest(n_estimators=2).fit(flat)))
    with pytest.raises(UserError, match="svm.skops: holds types this project does not load"):
        svm.from_bytes(foreign, "svm.skops")


def test_svm_stage_saves_logs_and_serves_the_svm(with_features, run_stage_script, workspace):
    with_features({"mlflow.log_model": True, "svm.c": 0.5})
    run_stage_script("svm")
    folder = workspace / "models" / "svm"
    assert sorted(path.name for path in folder.iterdir()) == ["classifier.json", "model.keras", "svm.skops"]
    metrics = json.loads((workspace / "metrics" / "svm.json").read_text())
    assert set(metrics["per_class"]) == {"a", "b", "c"} and metrics["test_images"] == 18 and metrics["epochs"] == 0
    assert (metrics["backbone"], metrics["c"], metrics["train_images"]) == ("vgg16", 0.5, 29)
    assert sorted(path.name for path in (workspace / "plots" / "svm").iterdir()) == [
        "confusion.csv", "confusion.png", "gradcam.png", "mistakes.png"]
    first = {path.name: path.read_bytes() for path in folder.iterdir()}

    # The served image classifier gives what the scikit-learn model gives on the test features.
    from imgclf.transfer import features
    test = features.load("test")
    sklearn_model = svm.from_bytes(paths.svm_file().read_bytes(), str(paths.svm_file()))
    expected = sklearn_model.predict_proba(test.features.reshape(len(test.features), -1))
    classifier = Classifier.load(paths.model_file("svm"), paths.classifier_info("svm"), "run svm")
    images = sorted((workspace / "data" / "split" / "test").glob("*/*.png"))
    outcomes = list(classifier.classify_files(images))
    np.testing.assert_allclose(np.stack([outcome.probabilities for outcome in outcomes]), expected, atol=1e-4)
    assert metrics["accuracy"] == pytest.approx(np.mean(expected.argmax(axis=1) == test.labels))

    # MLflow: the image classifier (keras + pyfunc) and the scikit-learn model through the sklearn flavor, skops.
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                f"{STAGE_RUNS} and tags.`dvc.stage` = 'svm'")
    logged = {model.name: model for model in client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")}
    assert {"model", "classifier", "svm"} <= set(logged)
    import mlflow.sklearn
    reloaded = mlflow.sklearn.load_model(logged["svm"].model_uri)
    np.testing.assert_allclose(reloaded.predict_proba(test.features.reshape(len(test.features), -1)), expected)
    assert run.data.params["architecture"] == "linear_svm" and run.data.metrics["accuracy"] == metrics["accuracy"]

    run_stage_script("svm")  # the same params: the same bytes
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == first
    rows = {row["stage"]: row for row in report.rows_from_files()}
    assert rows["svm"]["accuracy"] == metrics["accuracy"] and rows["svm"]["backbone"] == "vgg16"
    assert model_file.load(paths.model_file("svm"), "").name == "vgg16_svm"
