"""Your own images at scale: inspect, download + split of a 25,000- and a 100,000-file folder (data.source:
folder), and a no-op `dvc repro` with the 100,000-file folder as download's dependency.

The folders are generated once (benchmarks/work/own_<N>/): two classes, `<class>/<n>.jpg` and
`.png` alternating, tiny (16x16) images so that the figures are the pipeline's per-file costs, not
decoding. Each stage runs as the pipeline runs it (`python -m stages.<stage>`, its own params.yaml
and MLflow store); wall time and peak RSS are the process's. The split takes every image
(`all`, test_fraction 0.2). The no-op repro runs in a clone of the project restricted to download
and split, after a first `dvc repro`: DVC's state cache makes the folder a stat of each file.

    python benchmarks/own_images.py [--images 25000 100000]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

FLAT_TOLERANCE = 0.20  # split peak RSS from the smallest to the largest folder: within 20 %
TARGET_NOOP_S = 3.0
OWN = {"data.source": "folder", "data.train_per_class": "all", "data.test_per_class": "all",
       "data.test_fraction": 0.2, "mlflow.log_model": False}


def own_folder(images: int) -> Path:
    """benchmarks/work/own_<images>/{a,b}/<n>.{jpg,png}, made once."""
    root = common.WORK / f"own_{images}"
    if (root / ".complete").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(images)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
    for index in range(images):
        pixels = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        fmt, suffix = ("JPEG", "jpg") if index % 2 else ("PNG", "png")
        Image.fromarray(pixels).save(buffer, format=fmt)
        (root / ("a", "b")[index % 2] / f"{index}.{suffix}").write_bytes(buffer.getvalue())
    (root / ".complete").touch()
    return root


def download_and_split(folder: Path, images: int) -> dict:
    workspace = common.WORK / f"own_{images}_ws"
    shutil.rmtree(workspace, ignore_errors=True)
    common.write_params(workspace, OWN | {"data.path": str(folder)})
    result = {}
    # `python -m imgclf inspect` on the folder first: what a user runs before training.
    result["inspect"] = common.run_measured([sys.executable, "-m", "imgclf", "inspect", str(folder), "--format", "json"],
                                            workspace, common.stage_env(workspace))
    result["inspect"].pop("output")
    print(f"  inspect {images:,} files: {result['inspect']['seconds']:.1f} s, peak RSS "
          f"{result['inspect']['peak_rss_mib']:.0f} MiB", flush=True)
    for stage in ("download", "split"):
        result[stage] = common.run_measured([sys.executable, "-m", f"stages.{stage}"], workspace, common.stage_env(workspace))
        result[stage].pop("output")
        print(f"  {stage} {images:,} files: {result[stage]['seconds']:.1f} s, peak RSS "
              f"{result[stage]['peak_rss_mib']:.0f} MiB", flush=True)
    result["split"]["images_per_s"] = images / result["split"]["seconds"]
    shutil.rmtree(workspace, ignore_errors=True)
    return result


def noop_repro(folder: Path, repeats: int = 3) -> dict:
    """A clone with download + split only, data.path = `folder`: first repro, then timed no-ops."""
    project = common.clone_project("own_noop_")
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    pipeline = {"stages": {name: pipeline["stages"][name] for name in ("download", "split")}}
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    common.apply_overrides(project / "params.yaml", OWN | {"data.path": str(folder)})
    result = common.noop_repros(project, common.stage_env(project, project), repeats)
    shutil.rmtree(project.parent, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[25_000, 100_000])
    args = parser.parse_args()
    load = common.load_now()
    started = time.perf_counter()
    folders = {images: own_folder(images) for images in args.images}
    generate_s = time.perf_counter() - started
    print("download + split of your own folder:", flush=True)
    runs = {str(images): download_and_split(folders[images], images) for images in args.images}
    smallest, largest = runs[str(min(args.images))], runs[str(max(args.images))]
    growth = largest["split"]["peak_rss_mib"] / smallest["split"]["peak_rss_mib"] - 1
    print(f"no-op dvc repro with {max(args.images):,} files under data.path:", flush=True)
    noop = noop_repro(folders[max(args.images)])
    print(f"  first repro {noop['first_repro_s']:.1f} s, no-op {noop['noop_median_s']:.2f} s (median of 3)", flush=True)
    figures = {
        "images": args.images, "generate_s": generate_s, "runs": runs, "noop": noop,
        "checks": {
            "split_rss_growth": growth, "pass_split_rss_flat": bool(growth <= FLAT_TOLERANCE),
            "pass_noop_repro": bool(noop["noop_median_s"] <= TARGET_NOOP_S),
        },
        "wall_s": time.perf_counter() - started,
    }
    path = common.write_result("own_images", figures, load)
    print(f"split peak RSS {min(args.images):,} -> {max(args.images):,}: {growth * 100:+.1f} % "
          f"(target within {FLAT_TOLERANCE * 100:.0f} %); written to {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
