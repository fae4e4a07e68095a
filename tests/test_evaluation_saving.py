"""Saved models carry no optimizer state (a third of the size with Adam) and predict the same."""

import io
import zipfile

import h5py
import keras
import numpy as np

from imgclf import evaluation


def test_saved_model_has_no_optimizer_state_and_same_predictions(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    model.fit(x, np.zeros((16, 3)), epochs=1, verbose=0)
    target = tmp_path / "model.keras"
    evaluation.without_optimizer(model).save(target)
    with zipfile.ZipFile(target) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        assert "optimizer" not in weights
    loaded = keras.saving.load_model(target, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
