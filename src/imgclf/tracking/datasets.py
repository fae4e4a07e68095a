"""The data a run saw, as MLflow datasets: the split's manifest, one input per context (train, test).

name = `<data source>/<split>` (MLflow keeps one input per dataset and run, so the two contexts are
two datasets), digest = the manifest's sha256 (its first 16 hex digits: MLflow keeps at most 36
characters; the runs table shows them), source = the data path (own images) or the source's name,
profile = images per split and per class. Two runs on the same split show the same digests.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag

from imgclf import paths

DIGEST_CHARS = 16
CONTEXT_TAG = "mlflow.data.context"
OWN_IMAGES = ("folder", "csv")


def split_inputs(source: str, data_path: str, manifest: Path = paths.MANIFEST) -> list[DatasetInput]:
    """One DatasetInput per split of the manifest (none if there is no manifest yet)."""
    if not manifest.exists():
        return []
    counts: dict[str, Counter] = {}
    with open(manifest, newline="", encoding="utf-8") as stream:  # streamed: a million rows are ~130 MB
        for row in csv.DictReader(stream):
            counts.setdefault(row["split"], Counter())[row["class"]] += 1
    with open(manifest, "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()[:DIGEST_CHARS]
    profile = json.dumps({split: {"images": sum(classes.values()), "classes": dict(sorted(classes.items()))}
                          for split, classes in sorted(counts.items())}, sort_keys=True)
    origin = json.dumps({"uri": data_path} if source in OWN_IMAGES else {"source": source})
    schema = json.dumps({"mlflow_colspec": [{"name": "image", "type": "binary"}, {"name": "label", "type": "string"}]})
    return [
        DatasetInput(Dataset(name=f"{source}/{split}", digest=digest, source_type="local" if source in OWN_IMAGES else "code",
                             source=origin, schema=schema, profile=profile),
                     tags=[InputTag(CONTEXT_TAG, split)])
        for split in sorted(counts)
    ]
