"""An earlier version's S3 store (moto's request log) moves into the server's folders: multipart uploads, copies
and deletes followed, byte for byte, once. moto runs here as the earlier server ran it, recording its requests."""

from __future__ import annotations

import os
import subprocess
import sys

from boto3.s3.transfer import TransferConfig

from imgclf.team import moved_store, server

from helpers.servers import free_port, wait_until_up


def recorded_store(state) -> dict[str, bytes]:
    """moto's server with its request recorder on, as `make server` ran it: a bucket written the way MLflow's
    server and DVC wrote to it. Returns what the bucket holds."""
    import boto3

    log = state / "s3" / "requests.jsonl"
    log.parent.mkdir(parents=True)
    port = free_port()
    env = dict(os.environ, MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=str(log))
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, path="/moto-api/", timeout_s=60)
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket="imgclf")
        big = os.urandom(11 * 2**20)  # three parts of 5 MiB: a multipart upload, as MLflow's server makes one
        model = state / "model.keras"
        model.write_bytes(big)
        client.upload_file(str(model), "imgclf", "mlflow/1/abc/artifacts/model.keras",
                           Config=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20,
                                                 max_concurrency=1))
        client.put_object(Bucket="imgclf", Key="mlflow/1/abc/artifacts/metrics.json", Body=b'{"accuracy": 0.9}')
        client.put_object(Bucket="imgclf", Key="dvc/files/md5/ab/cdef", Body=b"dvc object")
        client.copy_object(Bucket="imgclf", Key="dvc/files/md5/cd/copy", CopySource={"Bucket": "imgclf",
                                                                                     "Key": "dvc/files/md5/ab/cdef"})
        client.put_object(Bucket="imgclf", Key="mlflow/scratch", Body=b"deleted below")
        client.delete_object(Bucket="imgclf", Key="mlflow/scratch")
        held = {item["Key"]: client.get_object(Bucket="imgclf", Key=item["Key"])["Body"].read()
                for item in client.list_objects_v2(Bucket="imgclf")["Contents"]}
    finally:
        process.terminate()
        process.wait(timeout=30)
    return held


def test_the_earlier_s3_store_moves_into_the_artifacts_and_dvc_folders_once(tmp_path):
    state = tmp_path / ".team"
    held = recorded_store(state)
    settings = server.Settings(state=state)
    assert "not moved" in moved_store.pending(state)
    line = moved_store.migrate(state, settings.artifacts_dir, settings.dvc_store)
    assert line.startswith("moved 2 artifact file(s) of the earlier S3 store") and "2 DVC object(s)" in line
    moved = {f"mlflow/{path.relative_to(settings.artifacts_dir).as_posix()}": path.read_bytes()
             for path in settings.artifacts_dir.rglob("*") if path.is_file()}
    moved |= {f"dvc/{path.relative_to(settings.dvc_store).as_posix()}": path.read_bytes()
              for path in settings.dvc_store.rglob("*") if path.is_file()}
    assert moved == held
    assert moved_store.migrate(state, settings.artifacts_dir, settings.dvc_store) is None, "once"
    assert moved_store.pending(state) is None
