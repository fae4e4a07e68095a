"""The S3-compatible endpoint: moto's standalone server on 127.0.0.1 for one machine and the tests
(`imgclf.team.s3_server`: moto's server app, one request at a time).

moto keeps objects in memory; its request recorder appends every request to a file, and on the next
start the writes in that file are replayed (recording paused meanwhile), so the bucket's objects
survive a restart. moto's own replay re-sends multipart uploads with the upload ids of the last run,
which no longer exist: here each replayed CreateMultipartUpload's new id replaces the recorded one in
the requests that follow. A team with real S3 (or any S3-compatible store) passes its endpoint
instead and none of this runs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode, urlsplit
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
    process = processes.start("s3", [sys.executable, "-m", "imgclf.team.s3_server", "127.0.0.1", str(port)], run_dir, env)
    processes.wait_until(processes.http_ok(f"{endpoint}/moto-api/"), f"the S3 endpoint (moto) on port {port}",
                         process, run_dir / "s3.log", timeout_s=60)
    if recording.stat().st_size:
        _control(endpoint, "stop-recording")
        try:
            failed = replay(recording, endpoint)
        finally:
            _control(endpoint, "start-recording")
        if failed:
            print(f"imgclf: s3: {failed} recorded write(s) could not be replayed into the local endpoint: "
                  f"see {run_dir / 's3.log'}", file=sys.stderr, flush=True)
    return endpoint


def replay(recording: Path, endpoint: str) -> int:
    """Re-send the recorded writes (reads change nothing) to `endpoint`; the number that failed.

    The recording holds requests, not answers, so a recorded upload id is matched to its upload by
    key: the first unseen id used on a key belongs to that key's oldest replayed CreateMultipartUpload.
    """
    new_ids: dict[str, list[str]] = {}  # key path -> ids of replayed uploads not yet matched
    upload_ids: dict[str, str] = {}  # recorded id -> replayed id
    failed = 0
    with recording.open() as lines:
        for line in lines:
            entry = json.loads(line)
            if entry["method"] in ("GET", "HEAD") or "/moto-api/" in entry["url"]:
                continue
            parsed = urlsplit(entry["url"])
            query = parse_qs(parsed.query, keep_blank_values=True)
            recorded = query.get("uploadId", [None])[0]
            if recorded is not None:
                if recorded not in upload_ids and new_ids.get(parsed.path):
                    upload_ids[recorded] = new_ids[parsed.path].pop(0)
                query["uploadId"] = [upload_ids.get(recorded, recorded)]
            body = base64.b64decode(entry["body"]) if entry.get("body_encoded") else (entry.get("body") or "").encode()
            headers = {key: value for key, value in entry["headers"].items()
                       if key.lower() not in ("host", "content-length", "transfer-encoding")}
            if not any(key.lower() == "content-type" for key in headers):  # else urllib sends a form type,
                headers["Content-Type"] = "application/octet-stream"  # and the server parses the body away
            target = endpoint + parsed.path + (f"?{urlencode(query, doseq=True)}" if query else "")
            try:
                with urlopen(Request(target, data=body or None, headers=headers, method=entry["method"]),
                             timeout=120) as answer:
                    text = answer.read()
            except HTTPError as error:
                failed += error.code >= 500
                continue
            if entry["method"] == "POST" and "uploads" in query:
                started = re.search(rb"<UploadId>([^<]+)</UploadId>", text)
                if started:
                    new_ids.setdefault(parsed.path, []).append(started.group(1).decode())
    return failed


def _control(endpoint: str, action: str) -> None:
    with urlopen(Request(f"{endpoint}/moto-api/recorder/{action}", method="POST"), timeout=30):
        pass


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
