"""Saved models carry no optimizer state (a third of the size with Adam) and predict the same."""

import io
import zipfile

import h5py
import keras
import numpy as np

from imgclf.inference import model_file


def test_saved_model_has_no_optimizer_state_and_same_predictions(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    model.fit(x, np.zeros((16, 3)), epochs=1, verbose=0)
    target = tmp_path / "model.keras"
    model_file.without_optimizer(model).save(target)
    with zipfile.ZipFile(target) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        assert "optimizer" not in weights
    loaded = keras.saving.load_model(target, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_saved_model_bytes_do_not_depend_on_when_or_where_it_was_saved(tmp_path, monkeypatch):
    # DVC caches models/<stage>/model.keras: Keras stamps the save time into it, and the Python
    # id() of shared objects (here the layers' dtype policy); save_model must keep neither.
    import datetime

    weights = [np.arange(48, dtype="float32").reshape(16, 3) / 48, np.zeros(3, "float32")]

    def build() -> keras.Model:  # a fresh instance each time: other Python ids, same model
        inputs = keras.Input(shape=(4, 4, 1), name="image")
        dense = keras.layers.Dense(3, activation="softmax", name="class")
        model = keras.Model(inputs, dense(keras.layers.Flatten(name="flat")(inputs)), name="m")
        dense.set_weights(weights)
        return model

    paths = [tmp_path / "a.keras", tmp_path / "b.keras"]
    keep_alive = [build()]
    model_file.save(keep_alive[0], paths[0])

    class Later(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(2031, 5, 6, 7, 8, 9)

    monkeypatch.setattr(datetime, "datetime", Later)
    keep_alive.append(build())
    model_file.save(keep_alive[1], paths[1])

    assert paths[0].read_bytes() == paths[1].read_bytes()
    x = np.random.default_rng(1).normal(size=(5, 4, 4, 1)).astype("float32")
    loaded = keras.saving.load_model(paths[1], safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), keep_alive[0].predict(x, verbose=0), rtol=1e-6)
