"""The S3-compatible endpoint: moto's standalone server on 127.0.0.1 for one machine and the tests.

moto keeps objects in memory; its request recorder appends every request to a file, and on the next
start the file is replayed, so the bucket's objects survive a restart. A team with real S3 (or any
S3-compatible store) passes its endpoint instead and none of this runs.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from urllib.request import Request, urlopen

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from imgclf.errors import UserError
from imgclf.team import processes

REGION = "us-east-1"


def credentials(file: Path) -> dict[str, str]:
    """The endpoint's access key pair, generated on first use into a 0600 file (moto accepts any pair)."""
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.touch(mode=0o600)
        file.write_text(json.dumps({"access_key_id": "imgclf" + secrets.token_hex(6),
                                    "secret_access_key": secrets.token_urlsafe(30)}) + "\n")
    return json.loads(file.read_text())


def client_env(keys: dict[str, str], endpoint: str) -> dict[str, str]:
    """What boto3 in MLflow's server needs to reach the endpoint."""
    return {"AWS_ACCESS_KEY_ID": keys["access_key_id"], "AWS_SECRET_ACCESS_KEY": keys["secret_access_key"],
            "AWS_DEFAULT_REGION": REGION, "MLFLOW_S3_ENDPOINT_URL": endpoint}


def start_local(folder: Path, port: int, run_dir: Path) -> str:
    """Start moto on 127.0.0.1:<port>, replay what it held before, return its endpoint URL."""
    folder.mkdir(parents=True, exist_ok=True)
    recording = folder / "requests.jsonl"
    recording.touch(mode=0o600)  # request headers and bodies: what the bucket holds
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=str(recording))
    moto = str(Path(sys.executable).parent / "moto_server")
    process = processes.start("s3", [moto, "-H", "127.0.0.1", "-p", str(port)], run_dir, env)
    processes.wait_until(processes.http_ok(f"{endpoint}/moto-api/"), f"the S3 endpoint (moto) on port {port}",
                         process, run_dir / "s3.log", timeout_s=60)
    if recording.stat().st_size:
        with urlopen(Request(f"{endpoint}/moto-api/recorder/replay-recording", method="POST"), timeout=600):
            pass
    return endpoint


def ensure_bucket(endpoint: str, bucket: str, keys: dict[str, str] | None) -> None:
    """Create the bucket unless it exists; a clear error if the endpoint refuses."""
    s3 = client(endpoint, keys)
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise UserError(f"S3 endpoint {endpoint}: bucket {bucket!r}: {error}") from None
    except BotoCoreError as error:
        raise UserError(f"S3 endpoint {endpoint} unreachable: {error}") from None
    s3.create_bucket(Bucket=bucket)


def client(endpoint: str, keys: dict[str, str] | None):
    """A boto3 S3 client of the endpoint (keys None: boto3's own lookup: env, profile, instance role)."""
    extra = {} if keys is None else {"aws_access_key_id": keys["access_key_id"],
                                     "aws_secret_access_key": keys["secret_access_key"]}
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **extra)
