"""The S3 store of earlier versions of `make server`, moved to the server's folders once.

Earlier versions kept the team's artifacts and DVC objects in an in-memory S3 endpoint (moto) whose
only persistence was a log of the requests it served: <state>/s3/requests.jsonl. The writes in that
log are replayed here into plain files, without any S3 endpoint: objects under `mlflow/` into
<state>/artifacts (the `mlflow-artifacts:/` URIs of the runs already logged keep resolving), objects
under `dvc/` into <state>/dvc (the DVC store). Single and multipart uploads, copies and deletes are
followed; the log is kept, marked as moved.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

MARK = "MOVED"
PREFIXES = {"mlflow/": "artifacts", "dvc/": "dvc"}


def _log(state: Path) -> Path:
    return state / "s3" / "requests.jsonl"


def pending(state: Path) -> str | None:
    """One line for a server that keeps its artifacts elsewhere (a bucket) while an old store waits."""
    if not _log(state).is_file() or (state / "s3" / MARK).exists():
        return None
    return (f"{_log(state).parent} holds the artifacts and DVC objects of an earlier version's S3 store, not moved: "
            f"start the server once without --artifacts to move them into {state / 'artifacts'} and "
            f"{state / 'dvc'}, then copy those to your bucket (e.g. `aws s3 sync`)")


def migrate(state: Path, artifacts: Path, dvc_store: Path) -> str | None:
    """Move an earlier version's S3 store into the folders (once); a line saying what moved, or None."""
    log = _log(state)
    if not log.is_file() or (log.parent / MARK).exists():
        return None
    objects = replay(log)
    targets = {"artifacts": artifacts, "dvc": dvc_store}
    counts = {"artifacts": 0, "dvc": 0, "other": 0}
    for key, body in sorted(objects.items()):
        prefix = next((prefix for prefix in PREFIXES if key.startswith(prefix)), None)
        if prefix is None:
            counts["other"] += 1
            continue
        kind = PREFIXES[prefix]
        path = targets[kind] / key[len(prefix):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        counts[kind] += 1
    line = (f"moved {counts['artifacts']} artifact file(s) of the earlier S3 store into {artifacts} and "
            f"{counts['dvc']} DVC object(s) into {dvc_store}" + (f" ({counts['other']} other object(s) left)"
                                                                 if counts["other"] else "")
            + f"; {log.parent} is no longer used and can be deleted")
    (log.parent / MARK).write_text(line + "\n")
    return line


def replay(log: Path) -> dict[str, bytes]:
    """{bucket-relative key: bytes} that the logged writes leave (path-style requests: /<bucket>/<key>)."""
    objects: dict[str, bytes] = {}
    parts: dict[str, dict[int, bytes]] = {}
    with log.open(encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            method = entry["method"]
            if method in ("GET", "HEAD") or "/moto-api/" in entry["url"]:
                continue
            parsed = urlsplit(entry["url"])
            bucket_and_key = unquote(parsed.path).lstrip("/").split("/", 1)
            key = bucket_and_key[1] if len(bucket_and_key) == 2 else ""
            query = parse_qs(parsed.query, keep_blank_values=True)
            body = base64.b64decode(entry["body"]) if entry.get("body_encoded") else (entry.get("body") or "").encode()
            headers = {name.lower(): value for name, value in entry.get("headers", {}).items()}
            upload = query.get("uploadId", [None])[0]
            if method == "PUT" and key and upload and "partNumber" in query:
                parts.setdefault(upload, {})[int(query["partNumber"][0])] = body
            elif method == "PUT" and key and "x-amz-copy-source" in headers:
                source = unquote(headers["x-amz-copy-source"]).lstrip("/").split("/", 1)
                if len(source) == 2 and source[1] in objects:
                    objects[key] = objects[source[1]]
            elif method == "PUT" and key and not set(query) & {"tagging", "acl", "uploadId"}:
                objects[key] = body
            elif method == "POST" and key and upload:  # complete a multipart upload: its parts, as listed
                numbers = [int(number) for number in re.findall(rb"<PartNumber>(\d+)</PartNumber>", body)]
                uploaded = parts.pop(upload, {})
                objects[key] = b"".join(uploaded[number] for number in (numbers or sorted(uploaded)))
            elif method == "DELETE" and key and not upload:
                objects.pop(key, None)
            elif method == "POST" and not key and "delete" in query:  # DeleteObjects
                for deleted in re.findall(rb"<Key>([^<]+)</Key>", body):
                    objects.pop(deleted.decode(), None)
    return objects
