"""The served classifier: a real `mlflow models serve` answering image files, bad requests as 400s."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
import skimage.data
from mlflow.tracking import MlflowClient
from PIL import Image

from imgclf import cli
from imgclf.tracking.tags import TAG_CLASSIFIER_MODEL

from helpers.servers import free_port, start, stop, wait_until_up

MAX_PIXELS = 250_000


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = Request(url + "/invocations", data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def images_request(*files: bytes) -> bytes:
    rows = [[base64.b64encode(data).decode("ascii")] for data in files]
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def bin_path() -> str:
    """PATH with this interpreter's bin first: the server runs `uvicorn` from there."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@pytest.fixture
def served(tiny_training, run_stage_script, mlflow_store, workspace):
    """baseline trained and logged, its classifier served by `mlflow models serve` on a free port."""
    tiny_training({"mlflow.log_model": True, "data.max_image_pixels": MAX_PIXELS, "baseline.epochs": 2})
    run_stage_script("baseline")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    (run,) = MlflowClient(uri).search_runs(["1"], "tags.`dvc.stage` = 'baseline'")
    model_uri = f"models:/{run.data.tags[TAG_CLASSIFIER_MODEL]}"
    port = free_port()
    server = start([str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", model_uri,
                    "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                   env=os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": bin_path()})
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, path="/ping")
        yield f"http://127.0.0.1:{port}", model_uri
    finally:
        stop(server)


def test_server_answers_image_files_as_predict_does_and_survives_bad_requests(served, workspace, capsys):
    url, model_uri = served
    photo = workspace / "chelsea.jpg"
    Image.fromarray(skimage.data.chelsea()).save(photo, format="JPEG", quality=90)  # a real cat photo
    digit = sorted((workspace / "data" / "split" / "test" / "b").glob("*.png"))[0]

    status, answer = post(url, images_request(photo.read_bytes(), digit.read_bytes()))
    assert status == 200, answer
    rows = answer["predictions"]
    assert [sorted(row) for row in rows] == [sorted(["label", "probability", "a", "b", "c"])] * 2

    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        cli.main(["predict", str(photo), str(digit), "--model", model_uri, "--top-k", "3", "--format", "json"])
    assert ended.value.code == 0
    predicted = json.loads(capsys.readouterr().out)
    for row, local in zip(rows, predicted, strict=True):
        assert row["label"] == local["predictions"][0]["label"]
        assert row["probability"] == pytest.approx(local["predictions"][0]["probability"], abs=1e-6)
        for entry in local["predictions"]:
            assert row[entry["label"]] == pytest.approx(entry["probability"], abs=1e-6)
        assert sum(row[name] for name in "abc") == pytest.approx(1.0, abs=1e-5)

    good = images_request(digit.read_bytes())
    truncated = photo.read_bytes()[: len(photo.read_bytes()) // 2]
    bad_requests = {
        "not an image": (images_request(b"hello, I am text"), "row 0: not a decodable image"),
        "truncated JPEG": (images_request(truncated), "row 0: corrupt or truncated"),
        "decompression bomb": (images_request(digit.read_bytes(), png(600, 600)), "row 1: too large to decode safely"),
        "not base64": (json.dumps({"dataframe_split": {"columns": ["image"], "data": [["%%%"]]}}).encode(),
                       "row 0: not valid base64"),
        "empty body": (b"", ""),
        "malformed JSON": (b'{"dataframe_split": {"columns": ["image"], "data": [[', ""),
        "wrong column": (json.dumps({"dataframe_split": {"columns": ["pixels"], "data": [["abc"]]}}).encode(), ""),
    }
    for what, (body, reason) in bad_requests.items():
        status, answer = post(url, body)
        assert 400 <= status < 500, (what, status, answer)
        if reason:  # our own checks: the message is one line, naming the row and the reason
            assert answer["message"].startswith("imgclf: ") and reason in answer["message"], (what, answer)
            assert "\n" not in answer["message"], (what, answer["message"])
        status, answer = post(url, good)
        assert status == 200 and len(answer["predictions"]) == 1, (what, answer)
