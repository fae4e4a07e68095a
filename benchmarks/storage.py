"""data.storage shards at scale: the pipeline's download + split on a packed source, its disk use, a no-op
`dvc repro`, and training input read from shards against files.

Pipeline (for each size; the folder and its pack are pack.py's, benchmarks/work/own_<N> and pack_<N>):
a clone of the project restricted to download and split, the pack inside it tracked by `dvc add` (the
docs' workflow), data.path = the pack, data.storage = shards, the split taking every image.
`dvc repro download` and then `dvc repro split` are each timed with their peak RSS (the stage process's,
DVC's hashing included); then
  - disk: `du` over the project's pack, data/ and .dvc/cache together (a block shared by hard links
    counted once), against the folder's bytes in files and its disk use: after the repro, and after
    `dvc checkout --relink`;
  - a no-op `dvc repro` (median of three);
  - the manifest's size: a changed image rewrites it, so `dvc push` sends it with the changed shard.
Input throughput: a digits set (28 px grayscale PNG) and a photo set (150 px JPEG) split both ways by the
real stages; `tfdata.load_ordered` (the bottleneck stage's single pass: read, decode, resize, batch)
iterated over the train split, folders and shards alternating, three times each: images/s, best of three.

    python benchmarks/storage.py [--images 100000 1000000] [--digits 20000] [--photos 2000] [--photo-pipeline 200000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import own_images
import pack as pack_bench

import common

TARGET_DISK_RATIO = 1.3
TARGET_NOOP_S = 5.0
FLAT_TOLERANCE = 0.20
OWN = {"data.source": "folder", "data.train_per_class": "all", "data.test_per_class": "all",
       "data.test_fraction": 0.2, "mlflow.log_model": False, "data.storage": "shards"}


def pipeline(images: int, folder: Path | None = None, packed: Path | None = None) -> dict:
    folder = folder or own_images.own_folder(images)
    packed = packed or common.WORK / f"pack_{images}"
    if not (packed / "pack.json").is_file():
        pack_bench.pack(folder, packed)
    project = common.clone_project("storage_")
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {name: stages[name] for name in ("download", "split")}},
                                                     sort_keys=False))
    env = common.stage_env(project, project)
    # The docs' workflow: the pack inside the project, tracked with `dvc add` (here a hard-linked copy of it).
    subprocess.run(["cp", "-al", str(packed), str(project / "packed")], check=True)
    subprocess.run(["dvc", "add", "-q", "packed"], cwd=project, env=env, check=True)
    common.apply_overrides(project / "params.yaml", OWN | {"data.path": "packed"})
    result: dict = {"folder": pack_bench.sizes(folder)}
    for stage in ("download", "split"):
        run = common.run_measured(["dvc", "repro", stage], project, env)
        run.pop("output")
        result[stage] = run
        print(f"  {images:,}: dvc repro {stage} {run['seconds']:.1f} s, peak RSS {run['peak_rss_mib']:.0f} MiB", flush=True)
    result["disk_after_repro_bytes"] = disk_use(project)
    # DVC leaves an output whose content its cache already holds as a copy (treeverse/dvc#10549); relink it.
    subprocess.run(["dvc", "checkout", "--relink", "-q"], cwd=project, env=env, check=True)
    used = result["disk_bytes"] = disk_use(project)
    result["disk_ratio"] = used / result["folder"]["apparent_bytes"]
    result["disk_ratio_to_folder_on_disk"] = used / result["folder"]["disk_bytes"]
    result["manifest_bytes"] = (project / "data" / "split" / "manifest.csv").stat().st_size
    result["split_pack_files"] = len(list((project / "data" / "split").glob("pack/shard-*.tfrecord")))
    result["noop"] = common.noop_repros(project, env)
    print(f"  {images:,}: pack + pipeline + cache {used / 1e6:.0f} MB on disk = {result['disk_ratio']:.2f} x the "
          f"folder's {result['folder']['apparent_bytes'] / 1e6:.0f} MB; manifest {result['manifest_bytes'] / 1e6:.1f} MB; "
          f"no-op dvc repro {result['noop']['noop_median_s']:.2f} s", flush=True)
    shutil.rmtree(project.parent, ignore_errors=True)
    return result


def disk_use(project: Path) -> int:
    """Bytes on disk of the project's pack, data/ and DVC cache together (blocks shared by links counted once)."""
    listed = subprocess.run(["du", "-s", "--block-size=1", "-c", str(project / "packed"), str(project / "data"),
                             str(project / ".dvc" / "cache")], capture_output=True, text=True, check=True)
    return int(listed.stdout.splitlines()[-1].split()[0])


def image_folder(name: str, count: int, side: int, gray: bool) -> Path:
    """benchmarks/work/<name>/{a,b}/<n>.png|jpg: `count` images of side x side, made once."""
    root = common.WORK / name
    if (root / ".complete").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(count)
    for index in range(count):
        label = index % 2
        picture = common.photo(rng, label, max(side, 64), max(side, 64)).resize((side, side))
        buffer = io.BytesIO()
        if gray:
            picture.convert("L").save(buffer, format="PNG")
        else:
            picture.save(buffer, format="JPEG", quality=90)
        folder = root / "ab"[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.{'png' if gray else 'jpg'}").write_bytes(buffer.getvalue())
    (root / ".complete").touch()
    return root


def _photos(task: tuple[Path, int, int]) -> None:
    root, start, stop = task
    rng = np.random.default_rng(start)
    for index in range(start, stop):
        label = index % 2
        buffer = io.BytesIO()
        common.photo(rng, label, 150, 150).save(buffer, format="JPEG", quality=90)
        (root / "ab"[label] / f"{index:07d}.jpg").write_bytes(buffer.getvalue())


def photo_folder(count: int) -> Path:
    """benchmarks/work/photos_pipeline_<count>/{a,b}/<n>.jpg: `count` photo-like JPEGs at 150 px, made once
    (two processes)."""
    from multiprocessing import Pool

    root = common.WORK / f"photos_pipeline_{count}"
    if (root / ".complete").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for label in "ab":
        (root / label).mkdir(parents=True)
    step = 10_000
    with Pool(2) as workers:
        workers.map(_photos, [(root, start, min(start + step, count)) for start in range(0, count, step)])
    (root / ".complete").touch()
    return root


def throughput(name: str, folder: Path, side: int, gray: bool, repeats: int = 3) -> dict:
    """Images/s of load_ordered over the train split, stored as folders and as shards (alternating)."""
    overrides = OWN | {"data.path": str(folder), "image.size": [side, side],
                       "image.color_mode": "grayscale" if gray else "rgb"}
    roots = {}
    for storage in ("folders", "shards"):
        workspace = common.WORK / f"storage_{name}_{storage}"
        shutil.rmtree(workspace, ignore_errors=True)
        common.write_params(workspace, overrides | {"data.storage": storage})
        for stage in ("download", "split"):
            common.run_measured([sys.executable, "-m", f"stages.{stage}"], workspace, common.stage_env(workspace))
        roots[storage] = workspace
    script = (
        "import json, sys, time\n"
        "from imgclf import params\n"
        "from imgclf.data import tfdata\n"
        "config = params.load('params.yaml')\n"
        "best = 0.0\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    dataset, _, count = tfdata.load_ordered(config, 'train', 64)\n"
        "    started = time.perf_counter()\n"
        "    for _ in dataset: pass\n"
        "    best = max(best, count / (time.perf_counter() - started))\n"
        "print(json.dumps({'images': count, 'images_per_s': best}))\n"
    )
    rates: dict[str, list[float]] = {"folders": [], "shards": []}
    images = 0
    for _ in range(repeats):
        for storage, workspace in roots.items():
            run = common.run_measured([sys.executable, "-c", script, "1"], workspace, common.stage_env(workspace))
            figures = json.loads(run["output"].strip().splitlines()[-1])
            rates[storage].append(figures["images_per_s"])
            images = figures["images"]
    result = {"images": images, "side": side, "gray": gray,
              "folders_images_per_s": max(rates["folders"]), "shards_images_per_s": max(rates["shards"]),
              "runs": rates}
    result["ratio"] = result["shards_images_per_s"] / result["folders_images_per_s"]
    print(f"  {name}: {images:,} train images at {side} px: files {result['folders_images_per_s']:.0f}/s, "
          f"shards {result['shards_images_per_s']:.0f}/s (x{result['ratio']:.2f})", flush=True)
    for workspace in roots.values():
        shutil.rmtree(workspace, ignore_errors=True)
    return result


def photos(count: int, load, started: float) -> None:
    """The same pipeline on `count` photo-like JPEGs at 150 px (the chapter's size): storage_photos.json."""
    print(f"download + split, data.storage shards, {count:,} photos at 150 px, packed:", flush=True)
    folder = photo_folder(count)
    packed = common.WORK / f"pack_photos_{count}"
    packing = pack_bench.pack(folder, packed) if not (packed / "pack.json").is_file() else None
    figures = {"images": count, "side": 150, "pack": packing, "run": pipeline(count, folder, packed),
               "wall_s": time.perf_counter() - started}
    path = common.write_result("storage_photos", figures, load)
    print(f"written to {path.relative_to(common.ROOT)} in {figures['wall_s'] / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--digits", type=int, default=20_000)
    parser.add_argument("--photos", type=int, default=2_000)
    parser.add_argument("--photo-pipeline", type=int, default=0,
                        help="instead: download + split on this many 150 px photos (200000: ~3 GB of disk)")
    args = parser.parse_args()
    load = common.load_now()
    started = time.perf_counter()
    if args.photo_pipeline:
        photos(args.photo_pipeline, load, started)
        return
    print("training input, shards against files:", flush=True)
    inputs = {"digits": throughput("digits", image_folder(f"digits_{args.digits}", args.digits, 28, True), 28, True),
              "photos": throughput("photos", image_folder(f"photos_{args.photos}", args.photos, 150, False), 150, False)}
    runs = {}
    for images in sorted(args.images):
        print(f"download + split, data.storage shards, a packed {images:,}-file source:", flush=True)
        runs[str(images)] = pipeline(images)
    checks = {"input_ratio_min": min(result["ratio"] for result in inputs.values())}
    checks["pass_input"] = bool(checks["input_ratio_min"] >= 1.0)
    if runs:
        smallest, largest = runs[str(min(args.images))], runs[str(max(args.images))]
        checks |= {
            "disk_ratio": largest["disk_ratio"], "pass_disk": bool(largest["disk_ratio"] <= TARGET_DISK_RATIO),
            "noop_s": largest["noop"]["noop_median_s"],
            "pass_noop": bool(largest["noop"]["noop_median_s"] <= TARGET_NOOP_S),
            "rss_growth": {stage: largest[stage]["peak_rss_mib"] / smallest[stage]["peak_rss_mib"] - 1
                           for stage in ("download", "split")},
        }
        checks["pass_flat_rss"] = bool(max(checks["rss_growth"].values()) <= FLAT_TOLERANCE)
    figures = {"images": sorted(args.images), "inputs": inputs, "runs": runs, "checks": checks,
               "wall_s": time.perf_counter() - started}
    path = common.write_result("storage", figures, load)
    print(f"written to {path.relative_to(common.ROOT)} in {figures['wall_s'] / 60:.1f} min (cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
