"""`python -m imgclf predict PATH…`: classify image files and folders with a stage's model, the champion, or any URI;
`explain PATH…`: the same, with a Grad-CAM overlay of each image's top class.

Files are decoded, resized and colour-converted as the split and training do (imgclf.data.decode),
in batches; each gets its top-k labels and probabilities. A file that cannot be classified gets one
line on stderr and the others are still predicted (exit code 1 if any failed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

import mlflow
import pandas as pd

from imgclf import paths
from imgclf.data import listing
from imgclf.data.images import FORMATS
from imgclf.data.listing import SplitFile
from imgclf.errors import UserError
from imgclf.inference import runtimes, serving
from imgclf.inference.classifier import Classifier, Outcome
from imgclf.pipeline import stages
from imgclf.tracking import registry, store


def load_model(choice: str, registered_model: str) -> tuple[Classifier, str]:
    """(classifier, what it is) for --model: best (the registry's champion), a stage, an MLflow model URI or a file."""
    if choice in stages.MODEL_STAGES:
        hint = f"run the {choice} stage first (dvc repro {choice})"
        return Classifier.load(paths.model_file(choice), paths.classifier_info(choice), hint), str(paths.model_dir(choice))
    if choice == "best":
        uri = store.tracking_uri()
        version = registry.champion(store.client(uri), registered_model, store.display_uri(uri))
        model_uri = registry.champion_uri(registered_model)
        return _from_mlflow(model_uri), f"{model_uri} (version {version.version}, {version.tags.get('stage', '?')})"
    if ":/" in choice:
        store.client(store.tracking_uri())  # reachable, and the URI's registry/runs are this store's
        return _from_mlflow(choice), choice
    if runtimes.is_model_file(Path(choice)):
        return exported(Path(choice)), choice
    raise UserError(f"--model {choice}: give best, a stage ({', '.join(stages.MODEL_STAGES)}), an MLflow model URI "
                    f"(models:/<name>@<alias>, models:/<model id>) or a model file ({', '.join(runtimes.SUFFIXES)}, "
                    f"a SavedModel folder) with its classifier.json beside it")


def exported(path: Path) -> Classifier:
    """A model file (models/export/<stage>/int8.tflite, model.onnx, saved_model/, or a .keras file) and the
    classifier.json in its folder (a SavedModel folder's: beside the folder)."""
    return Classifier.load(path, path.parent / "classifier.json", "")


def _from_mlflow(uri: str) -> Classifier:
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise UserError(f"{uri}: cannot be loaded ({str(error).splitlines()[0][:160]})") from None
    return serving.unwrap(model, uri)


def image_files(targets: Sequence[str]) -> tuple[list[Path | SplitFile], list[str]]:
    """(files to classify, errors): the given files, and the image files under given folders, sorted
    (a sharded split, data.storage shards: its images, as if they were files)."""
    files, errors = [], []
    for target in targets:
        path = Path(target)
        if path.is_dir() and listing.sharded(path):
            files.extend(file for split in sorted(paths.SPLITS) for file in listing.files(path, split))  # as sorted paths
        elif path.is_dir():
            found = sorted(child for child in path.rglob("*") if child.is_file() and child.suffix.lower() in FORMATS)
            if not found:
                errors.append(f"{path}: no image files ({', '.join(sorted(FORMATS))}) in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}: not found")
    return files, errors


def rows(outcomes: Iterable[Outcome], classifier: Classifier, top_k: int) -> Iterable[dict | str]:
    """Per outcome: {path, predictions: [(label, probability)…]} best first (several heads: {path, heads:
    {column: [(label, probability)…]}}), or its error line."""
    for outcome in outcomes:
        if outcome.probabilities is None:
            yield f"{outcome.source}: {outcome.error}"
            continue
        found = {}
        for column, names, part in classifier.groups():
            scores = outcome.probabilities[part]
            found[column] = [(names[index], float(scores[index])) for index in scores.argsort()[::-1][:top_k]]
        yield {"path": outcome.source, "predictions": found[None]} if None in found else \
            {"path": outcome.source, "heads": found}


def render(results: list[dict], output_format: str, top_k: int) -> str:
    """Table (people), CSV or JSON (tools) of the predictions."""
    if output_format == "json":
        return json.dumps([{"path": result["path"], "predictions": _json_predictions(result)}
                           | ({"gradcam": result["gradcam"]} if "gradcam" in result else {}) for result in results],
                          indent=2) + "\n"
    label_heads = list(results[0]["heads"]) if results and "heads" in results[0] else [None]
    columns = ["path"]
    for head in label_heads:
        label, probability = (head, f"{head}_probability") if head else ("label", "probability")
        for rank in range(1, top_k + 1):
            suffix = "" if rank == 1 else f"_{rank}"
            columns += [f"{label}{suffix}", f"{probability}{suffix}"]
    table = pd.DataFrame(
        [[result["path"], *[value for head in label_heads for pair in _pairs(result, head) for value in pair]]
         for result in results],
        columns=columns,
    )
    if output_format == "csv":
        return table.to_csv(index=False, lineterminator="\n", float_format="%.6f")
    if table.empty:
        return ""
    return table.to_string(index=False, float_format=lambda value: f"{value:.4f}") + "\n"


def _pairs(result: dict, head: str | None) -> list[tuple[str, float]]:
    return result["predictions"] if head is None else result["heads"][head]


def _json_predictions(result: dict) -> list | dict:
    def listed(pairs: list[tuple[str, float]]) -> list[dict]:
        return [{"label": label, "probability": round(probability, 6)} for label, probability in pairs]

    if "heads" in result:
        return {head: listed(pairs) for head, pairs in result["heads"].items()}
    return listed(result["predictions"])


def main(targets: Sequence[str], choice: str, top_k: int, output_format: str, batch_size: int,
         registered_model: str) -> int:
    """Run `predict`; returns the exit code (0, or 1 when any file failed)."""
    if top_k < 1:
        raise UserError(f"--top-k {top_k}: must be at least 1")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be at least 1")
    classifier, described = load_model(choice, registered_model)
    for column, names, _ in classifier.groups():
        if top_k > len(names):
            raise UserError(f"--top-k {top_k}: the model has {len(names)} classes" + (f" in head {column}" if column else ""))
    files, errors = image_files(targets)
    for line in errors:
        print(f"imgclf: {line}", file=sys.stderr, flush=True)
    results = []
    failed = len(errors)
    for result in rows(classifier.classify_files(files, batch_size), classifier, top_k):
        if isinstance(result, str):
            failed += 1
            print(f"imgclf: {result}", file=sys.stderr, flush=True)
        else:
            results.append(result)
    sys.stdout.write(render(results, output_format, top_k))
    print(f"predict: {len(results)} images classified by {described}"
          + (f", {failed} failed" if failed else ""), file=sys.stderr, flush=True)
    return 1 if failed else 0


def explain(targets: Sequence[str], choice: str, out: Path, top_k: int, registered_model: str) -> int:
    """`explain`: top-k per image and a Grad-CAM overlay of its top class in `out`; 1 when any file failed."""
    from PIL import Image

    from imgclf.inference import explain as gradcam

    if top_k < 1:
        raise UserError(f"--top-k {top_k}: must be at least 1")
    classifier, described = load_model(choice, registered_model)
    files, errors = image_files(targets)
    failed = len(errors)
    for line in errors:
        print(f"imgclf: {line}", file=sys.stderr, flush=True)
    has_map = classifier.model is not None and gradcam.target_layer(classifier.model) is not None
    if not has_map:
        why = "has no convolution" if classifier.model is not None else "is not a Keras model (Grad-CAM needs one)"
        print(f"explain: {described} {why}: top-k only, no Grad-CAM", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in files:
        image = classifier.read(path)  # decoded once: for the probabilities and for the map
        if isinstance(image, str):
            failed += 1
            print(f"imgclf: {path}: {image}", file=sys.stderr, flush=True)
            continue
        outcome = Outcome(str(path), classifier.probabilities(image[None])[0])
        (result,) = rows([outcome], classifier, top_k)
        if has_map:
            _, _, part = classifier.groups()[0]
            best = part.start + int(outcome.probabilities[part].argmax())
            cam = gradcam.gradcam(classifier.model, image[None], [best])[0]
            target = out / f"{path.stem}.gradcam.png"
            shown = Image.fromarray(gradcam.overlay(image, cam))
            factor = max(1, 224 // max(shown.size))  # small images scaled up by a whole factor, pixels kept sharp
            shown.resize((shown.width * factor, shown.height * factor), Image.Resampling.NEAREST).save(target)
            result["gradcam"] = str(target)
        results.append(result)
    sys.stdout.write(render(results, "json", top_k) if results else "")
    print(f"explain: {len(results)} images by {described}" + (f", Grad-CAM overlays in {out}" if has_map else "")
          + (f", {failed} failed" if failed else ""), file=sys.stderr, flush=True)
    return 1 if failed else 0
