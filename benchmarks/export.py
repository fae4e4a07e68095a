"""Deploy small: every model stage of the offline default exported, and the champion's targets checked.

In a fresh clone of the committed project, `dvc repro` the offline default (mnist-sample) with
`export.stages: all`: every model stage as SavedModel, TFLite float32 / dynamic-range int8 / full-integer int8
and ONNX, each run on the whole test split in its own runtime (LiteRT, onnxruntime). Checked on the champion
(the leaderboard's first): full-integer int8 at most 0.3x its .keras size and within 1 point of its Keras test
accuracy; ONNX agreeing with Keras on at least 99.5 % of the test labels; latency ratios to Keras reported.

    python benchmarks/export.py [--champion-only] [--keep]
    python benchmarks/export.py --here      # this checkout's pipeline as it is (after make repro): the champion
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

TARGETS = {"int8_size_x_keras_max": 0.3, "int8_accuracy_drop_max": 0.01, "onnx_agreement_min": 0.995}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--champion-only", action="store_true", help="export.stages: champion (the default params)")
    parser.add_argument("--keep", action="store_true", help="keep the clone in benchmarks/work")
    parser.add_argument("--here", action="store_true", help="this checkout with its own params (export.stages as set): "
                        "dvc repro here (nothing to do right after make repro) and its figures, no fresh clone")
    args = parser.parse_args()
    load = common.load_now()
    if args.here:
        repro = common.dvc_repro(common.ROOT, common.stage_env(common.ROOT))
        record(common.ROOT, repro, load, "this checkout after make repro")
        return
    clone = common.clone_project("export-")
    try:
        common.apply_overrides(clone / "params.yaml", {"export.stages": "champion" if args.champion_only else "all"})
        env = common.stage_env(clone, clone)
        print(f"dvc repro (offline default, export.stages {'champion' if args.champion_only else 'all'}) in {clone} ...",
              flush=True)
        repro = common.dvc_repro(clone, env)
        record(clone, repro, load, "a fresh clone")
    finally:
        if not args.keep:
            shutil.rmtree(clone.parent, ignore_errors=True)


def record(project: Path, repro: dict, load: list[float], where: str) -> None:
    """benchmarks/results/export.json from the project's metrics/export.json and reports/export.csv."""
    metrics = json.loads((project / "metrics" / "export.json").read_text())
    table = pd.read_csv(project / "reports" / "export.csv")
    champion = str(pd.read_csv(project / "reports" / "leaderboard.csv")["stage"].iloc[0])
    mine = table[table["stage"] == champion].set_index("format")
    keras_accuracy = float(mine.loc["keras", "accuracy"])
    figures = {
        "workload": "offline default (mnist-sample: 400 train + 100 test images per class, 28x28 grayscale)",
        "where": where, "exported": sorted(metrics["stages"]),
        "champion": champion,
        "export_s": round(repro["stage_seconds"]["export"], 1) if "export" in repro["stage_seconds"] else None,
        "test_images": metrics["test_images"],
        "rows": json.loads(table.to_json(orient="records")),
        "champion_int8_size_x_keras": float(mine.loc["tflite_int8", "size_x_keras"]),
        "champion_int8_accuracy_drop": round(keras_accuracy - float(mine.loc["tflite_int8", "accuracy"]), 6),
        "champion_onnx_agreement": float(mine.loc["onnx", "agreement"]),
        "champion_latency_x_keras": {name: float(mine.loc[name, "latency_x_keras"]) for name in mine.index},
        "targets": TARGETS,
    }
    figures["checks"] = {
        "pass_int8_size": figures["champion_int8_size_x_keras"] <= TARGETS["int8_size_x_keras_max"],
        "pass_int8_accuracy": figures["champion_int8_accuracy_drop"] <= TARGETS["int8_accuracy_drop_max"],
        "pass_onnx_agreement": figures["champion_onnx_agreement"] >= TARGETS["onnx_agreement_min"],
    }
    print(table.to_string(index=False), flush=True)
    print(f"champion {champion}: int8 {figures['champion_int8_size_x_keras']:.3f}x the .keras size, accuracy "
          f"{figures['champion_int8_accuracy_drop']:+.4f} below Keras; ONNX agreement {figures['champion_onnx_agreement']:.4f}; "
          f"checks {figures['checks']}")
    path = common.write_result("export", figures, load)
    print(f"written to {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
