"""The local S3 endpoint (moto) keeps a bucket's objects across a restart: multipart uploads, deletes, DVC's s3fs."""

from __future__ import annotations

import os

from boto3.s3.transfer import TransferConfig

from imgclf.team import processes, s3

from helpers.servers import free_port


def test_objects_survive_a_restart_multipart_uploads_and_deletes_included(tmp_path):
    port, run_dir = free_port(), tmp_path / "run"
    endpoint = s3.start_local(tmp_path / "s3", port, run_dir)
    keys = s3.credentials(tmp_path / "s3.credentials")
    try:
        s3.ensure_bucket(endpoint, "imgclf", keys)
        client = s3.client(endpoint, keys)
        big = tmp_path / "model.keras"
        big.write_bytes(os.urandom(11 * 2**20))  # three parts of 5 MiB: a multipart upload, as MLflow's server does
        client.upload_file(str(big), "imgclf", "mlflow/1/model.keras",
                           Config=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20))
        client.put_object(Bucket="imgclf", Key="dvc/files/md5/ab/cdef", Body=b"dvc object")
        client.put_object(Bucket="imgclf", Key="scratch", Body=b"deleted below")
        client.delete_object(Bucket="imgclf", Key="scratch")
        recorded = (tmp_path / "s3" / "requests.jsonl").read_text().count("\n")
    finally:
        processes.stop("s3", run_dir)

    endpoint = s3.start_local(tmp_path / "s3", port, run_dir)
    try:
        client = s3.client(endpoint, keys)
        listed = sorted(item["Key"] for item in client.list_objects_v2(Bucket="imgclf")["Contents"])
        assert listed == ["dvc/files/md5/ab/cdef", "mlflow/1/model.keras"]
        assert client.get_object(Bucket="imgclf", Key="mlflow/1/model.keras")["Body"].read() == big.read_bytes()
        assert client.get_object(Bucket="imgclf", Key="dvc/files/md5/ab/cdef")["Body"].read() == b"dvc object"
        # The replay itself was not recorded again (the file would double at every start).
        assert (tmp_path / "s3" / "requests.jsonl").read_text().count("\n") <= recorded + 4
    finally:
        processes.stop("s3", run_dir)
