"""Inference: `predict` on JPEG files vs the bare model call, and served requests vs `predict` at batch 1.

Model: the chapter's CNN in its photo layout at 150x150 RGB (cats-vs-dogs' size), random weights
(timing only), as every model stage saves it (uint8 in, imgclf.inference.Classifier). Files: 256
photo-like JPEGs of 300-500 px (common.photo_split), decoded and resized by imgclf.data.decode.

- bare: Classifier.probabilities on preloaded uint8 batches of 32 (the model call, nothing else).
- predict: Classifier.classify_files(files, 32), what `python -m imgclf predict` runs: read, check,
  decode, resize in threads while the model scores the previous batch.
- served: the model logged as the served classifier (pyfunc from code) in a temp SQLite store,
  `mlflow models serve --env-manager local` (1 worker), 4 client threads posting one base64 JPEG
  per request, 500 requests after 20 warm-up ones; vs predict at batch 1 over the same files.
Also, for scale: the same predict/bare ratio for the 28px chapter CNN on 28x28 PNG digits, where
the model is so small that decoding dominates.

Targets: predict / bare >= 0.8 (photo model); served / predict-at-batch-1 >= 0.6, p99 <= 3 x p50,
zero errors.

    python benchmarks/inference.py [--requests 500]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

sys.path.insert(0, str(common.ROOT / "tests"))  # the tests' server helpers: free port, setsid, wait, stop
from imgclf.inference import model_file
from imgclf.inference.classifier import Classifier, write_info
from imgclf.models import architectures
from imgclf.params import CnnParams

from helpers.servers import free_port, start, stop, wait_until_up

FILES = 256
BATCH = 32
REPEATS = 3
CLIENTS = 4
WARMUP_REQUESTS = 20
TARGETS = {"predict_over_bare_min": 0.8, "served_over_predict_b1_min": 0.6, "p99_over_p50_max": 3.0}


def photo_model() -> Classifier:
    config = CnnParams(architecture="simple_cnn", layout="photo", filters=(64, 128), dense_units=1024, dropout=0.3,
                       precision="float32", local_response_normalization=False)
    return Classifier(architectures.build((150, 150, 3), 2, config), ["cat", "dog"], 40_000_000)


def digit_model() -> Classifier:
    config = CnnParams(architecture="simple_cnn", layout="chapter", filters=(64, 128), dense_units=1024, dropout=0.3,
                       precision="float32", local_response_normalization=False)
    return Classifier(architectures.build((28, 28, 1), 10, config), [str(d) for d in range(10)], 40_000_000)


def digit_files(count: int) -> list[Path]:
    folder = common.WORK / "inference_digits"
    if not (folder / ".complete").is_file():
        from imgclf.data import sources

        folder.mkdir(parents=True, exist_ok=True)
        images = sources.load_mnist_sample().x_train[:count]
        for index, pixels in enumerate(images):
            Image.fromarray(np.asarray(pixels, dtype=np.uint8).reshape(28, 28)).save(folder / f"{index:05d}.png")
        (folder / ".complete").write_text("ok\n")
    return sorted(folder.glob("*.png"))[:count]


def rate(images: int, seconds: float) -> float:
    return images / seconds if seconds else float("nan")


def bare_and_predict(classifier: Classifier, files: list[Path]) -> dict:
    """images/s of the bare model call on preloaded batches and of classify_files, same batch; medians."""
    decoded = np.stack([classifier.decode(path.read_bytes(), path.name) for path in files])
    batches = [decoded[start:start + BATCH] for start in range(0, len(decoded), BATCH)]
    classifier.probabilities(batches[0])  # tracing
    list(classifier.classify_files(files[:BATCH], BATCH))
    bare, predict = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for batch in batches:
            classifier.probabilities(batch)
        bare.append(rate(len(decoded), time.perf_counter() - started))
        started = time.perf_counter()
        outcomes = list(classifier.classify_files(files, BATCH))
        predict.append(rate(len(outcomes), time.perf_counter() - started))
        assert all(outcome.probabilities is not None for outcome in outcomes)
    return {"bare_images_per_s": statistics.median(bare), "predict_images_per_s": statistics.median(predict),
            "predict_over_bare": statistics.median(predict) / statistics.median(bare)}


def predict_batch1(classifier: Classifier, files: list[Path]) -> float:
    list(classifier.classify_files(files[:8], 1))
    started = time.perf_counter()
    outcomes = list(classifier.classify_files(files, 1))
    return rate(len(outcomes), time.perf_counter() - started)


def log_served(classifier: Classifier, folder: Path) -> tuple[str, str]:
    """The classifier saved and logged as the served model in a temp store: (tracking URI, model URI)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from imgclf.tracking import logged_models
    from imgclf.tracking.runs import StageRun

    model_path, info_path = folder / "model.keras", folder / "classifier.json"
    model_file.save(classifier.model, model_path)
    write_info(info_path, classifier.class_names, classifier.spec)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("bench", artifact_location=(folder / "mlartifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        example = np.zeros((1, *classifier.model.input_shape[1:]), dtype=np.uint8)
        model_id = logged_models.log_classifier(StageRun(MlflowClient(uri), run.info.run_id, uri), model_path, info_path,
                                         list(classifier.class_names), example[0], {})
    return uri, f"models:/{model_id}"


def serve_and_load(uri: str, model_uri: str, files: list[Path], requests: int) -> dict:
    port = free_port()
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": f"{common.VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    server = start([str(common.VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                    "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], env)
    url = f"http://127.0.0.1:{port}/invocations"
    bodies = [json.dumps({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(path.read_bytes()).decode()]]}}).encode()
              for path in files]
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, "/ping")
        for index in range(WARMUP_REQUESTS):
            post(url, bodies[index % len(bodies)])
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(offset: int) -> None:
            for index in range(offset, requests, CLIENTS):
                started = time.perf_counter()
                status = post(url, bodies[index % len(bodies)])
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if status != 200:
                        errors.append(str(status))

        threads = [threading.Thread(target=client, args=(offset,)) for offset in range(CLIENTS)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        stop(server)
    ordered = sorted(latencies)
    return {
        "requests": len(latencies), "clients": CLIENTS, "errors": len(errors), "seconds": round(seconds, 2),
        "requests_per_s": rate(len(latencies), seconds),
        "p50_ms": 1000 * ordered[len(ordered) // 2], "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def post(url: str, body: bytes) -> int:
    request = Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urlopen(request, timeout=60) as answer:
            answer.read()
            return answer.status
    except HTTPError as error:
        return error.code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    load_before = common.load_now()
    root = common.photo_split("inference", FILES // 2, 0)
    files = sorted((root / "train").glob("*/*.jpg"))[:FILES]
    photo = photo_model()
    figures: dict = {"model": "chapter CNN, photo layout, 150x150x3, random weights", "files": len(files),
                     "batch": BATCH, "targets": TARGETS}
    figures["photo"] = bare_and_predict(photo, files)
    figures["digits"] = bare_and_predict(digit_model(), digit_files(FILES))
    figures["predict_batch1_images_per_s"] = predict_batch1(photo, files)
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-serve-") as folder:
        uri, model_uri = log_served(photo, Path(folder))
        figures["served"] = serve_and_load(uri, model_uri, files, args.requests)
    served = figures["served"]
    figures["served_over_predict_b1"] = served["requests_per_s"] / figures["predict_batch1_images_per_s"]
    figures["p99_over_p50"] = served["p99_ms"] / served["p50_ms"]
    figures["pass"] = {
        "predict_over_bare": figures["photo"]["predict_over_bare"] >= TARGETS["predict_over_bare_min"],
        "served_over_predict_b1": figures["served_over_predict_b1"] >= TARGETS["served_over_predict_b1_min"],
        "p99_over_p50": figures["p99_over_p50"] <= TARGETS["p99_over_p50_max"],
        "zero_errors": served["errors"] == 0,
    }
    print(json.dumps(figures, indent=2))
    common.write_result("inference", figures, load_before)


if __name__ == "__main__":
    main()
