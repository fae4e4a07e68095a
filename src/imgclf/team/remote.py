"""`make remote`: the project's DVC remote on an S3-compatible bucket.

The remote's URL goes to `.dvc/config` (committed: teammates share it); the endpoint and, for the
local S3 endpoint of `make server`, its key pair go to `.dvc/config.local`, which DVC keeps out of
git. With real S3, credentials come from boto3's own lookup (environment, profile, instance role)
and are not written anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from dvc.config import Config

from imgclf.errors import UserError
from imgclf.team import BUCKET, REMOTE, s3, server


def configure(root: Path, state: Path, name: str = REMOTE, url: str | None = None,
              endpoint: str | None = None) -> str:
    """Add (or replace) remote `name` as the default; return a line saying what was set."""
    info = _server_info(state)
    keys = None
    if endpoint is None:
        if info is None:
            raise UserError(f"no --endpoint given and no team server state in {state}: start it (make server) "
                            f"or pass the S3 endpoint (and a remote URL) yourself")
        endpoint = info["s3_endpoint"]
        if info.get("local_s3"):
            keys = s3.credentials(server.Settings(state=state).s3_keys_file)
    url = url or f"s3://{(info or {}).get('bucket', BUCKET)}/dvc"
    if not url.startswith("s3://"):
        raise UserError(f"remote URL {url!r}: must be s3://<bucket>/<path>")
    config = Config(dvc_dir=root / ".dvc")
    with config.edit("repo") as conf:
        conf["remote"][name] = {"url": url}
        conf["core"]["remote"] = name
    with config.edit("local") as conf:
        local = {"endpointurl": endpoint}
        if keys is not None:
            local |= {"access_key_id": keys["access_key_id"], "secret_access_key": keys["secret_access_key"]}
        conf["remote"][name] = local
    secret = "the local endpoint's key pair" if keys else "credentials from your AWS environment/profile"
    return (f"remote: {name} = {url} (default) in .dvc/config; endpoint {endpoint} and {secret} "
            f"in .dvc/config.local (not in git)")


def _server_info(state: Path) -> dict | None:
    try:
        return json.loads(server.Settings(state=state).info_file.read_text())
    except (OSError, ValueError):
        return None
