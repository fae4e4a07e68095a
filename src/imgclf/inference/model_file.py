"""The model file, models/<stage>/model.keras: byte-stable saving, no optimizer state, safe loading."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Callable

import keras

from imgclf.errors import UserError
from imgclf.models import layers  # noqa: F401 - registers the project's own layers before any file loads

# The zip epoch: Keras stamps each save with the time (metadata.json's date_saved and the weights
# entry's date); both are set to this so the same weights give the same bytes.
STABLE_DATE = (1980, 1, 1, 0, 0, 0)
STABLE_DATE_SAVED = "{:04d}-{:02d}-{:02d}@{:02d}:{:02d}:{:02d}".format(*STABLE_DATE)  # Keras' date_saved format


def save(model: keras.Model, target: Path) -> None:
    """model.save(target) as a .keras file with nothing run-specific in it (DVC caches it).

    Two runs with the same weights write byte-identical files: date_saved reads
    1980-01-01@00:00:00 (Keras' file editor expects the key), every zip entry has that date, and
    shared-object ids (Python id()s) are renumbered.
    """
    model.save(target)
    target.write_bytes(stable_zip(target.read_bytes(), _stable_entry))


def _stable_entry(name: str, data: bytes) -> bytes:
    if name == "metadata.json":
        return json.dumps(json.loads(data) | {"date_saved": STABLE_DATE_SAVED}).encode()
    if name == "config.json":
        return json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
    return data


def stable_zip(
    saved: bytes, edit: Callable[[str, bytes], bytes] = lambda name, data: data, rename: Callable[[str], str] = str,
) -> bytes:
    """A zip file (.keras, .skops) with every entry dated STABLE_DATE, `edit(name, data)` applied, `rename`d."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(saved)) as source, zipfile.ZipFile(buffer, "w") as stable:
        for info in source.infolist():
            entry = zipfile.ZipInfo(rename(info.filename), date_time=STABLE_DATE)
            entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
            stable.writestr(entry, edit(info.filename, source.read(info)))
    return buffer.getvalue()


def _renumber_shared_objects(node: Any, numbers: dict[int, int]) -> Any:
    """Keras marks objects used twice with `shared_object_id`: the object's Python id(), which
    differs every run. Replaced by 1, 2, ... in order of appearance (loading only pairs them up)."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id"
            else _renumber_shared_objects(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(value, numbers) for value in node]
    return node


def without_optimizer(model: keras.Model) -> keras.Model:
    """A copy without optimizer state for saving: a third of the file with Adam, same predictions."""
    if getattr(model, "optimizer", None) is None:
        return model
    # Not keras.models.clone_model: since Keras 3.x it compiles the clone, optimizer included.
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def load(path: Path, missing_hint: str) -> keras.Model:
    """A .keras file loaded with safe_mode (no code in the file runs); `missing_hint` says what to run."""
    if not Path(path).is_file():
        raise UserError(f"{path}: not found: {missing_hint}")
    return keras.models.load_model(path, safe_mode=True)
