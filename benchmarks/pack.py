"""Data at scale: `python -m imgclf pack` on 100,000- and 1,000,000-file folders, and what DVC then costs.

For each size the folder is own_images.py's (two classes, tiny 16x16 JPEG/PNG files, generated once
under benchmarks/work/). Measured:
  - pack: wall time and peak RSS; the pack's bytes against the folder's (apparent bytes, and disk use:
    a tiny file takes a whole file-system block);
  - one changed image (one file rewritten, then packed again): repack time, shards written, and the
    bytes written — the shards and indexes `dvc add` stores and `dvc push` sends anew (plus pack.json);
  - a no-op `dvc repro` of the download stage (a clone of the project restricted to it) with data.path
    the pack, the median of three after a first repro; `dvc status` after the one changed image;
  - the same no-op with data.path the raw folder (--raw-folder: its first repro hashes every file).
The changed image is put back and the pack rebuilt as it was, so the folder stays own_images.py's.

    python benchmarks/pack.py [--images 100000 1000000] [--raw-folder]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import own_images

import common

TARGET_NOOP_S = 5.0
TARGET_DISK_RATIO = 1.3
OWN = {"data.source": "folder", "mlflow.log_model": False}


def sizes(folder: Path) -> dict[str, int]:
    """Apparent bytes of every file below `folder`, and the disk blocks they take (du)."""
    apparent = sum(entry.stat().st_size for entry in folder.rglob("*") if entry.is_file())
    disk = int(subprocess.run(["du", "-s", "--block-size=1", str(folder)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    return {"apparent_bytes": apparent, "disk_bytes": disk}


def pack(folder: Path, out: Path) -> dict:
    run = common.run_measured([sys.executable, "-m", "imgclf", "pack", str(folder), str(out)], common.ROOT,
                              common.stage_env(common.ROOT))
    summary = [line for line in run.pop("output").splitlines() if line.startswith("pack: ") and " in " in line][-1]
    return run | {"summary": summary}


def download_only(data_path: Path) -> tuple[Path, dict[str, str]]:
    """A clone of the project whose dvc.yaml holds only the download stage, data.path = `data_path`."""
    project = common.clone_project("pack_noop_")
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"download": pipeline["stages"]["download"]}},
                                                     sort_keys=False))
    common.apply_overrides(project / "params.yaml", OWN | {"data.path": str(data_path)})
    return project, common.stage_env(project, project)


def dvc_status_seconds(project: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(["dvc", "status"], cwd=project, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def measure(images: int, raw_folder: bool) -> dict:
    folder = own_images.own_folder(images)
    out = common.WORK / f"pack_{images}"
    shutil.rmtree(out, ignore_errors=True)
    result: dict = {"folder": sizes(folder)}
    result["pack"] = pack(folder, out)
    result["pack"] |= sizes(out)
    result["pack"]["shards"] = len(json.loads((out / "pack.json").read_text())["shards"])
    result["disk_ratio"] = result["pack"]["disk_bytes"] / result["folder"]["apparent_bytes"]
    print(f"  {images:,} files: pack {result['pack']['seconds']:.1f} s, peak RSS {result['pack']['peak_rss_mib']:.0f} MiB, "
          f"{result['pack']['shards']} shards, {result['pack']['disk_bytes'] / 1e6:.0f} MB on disk "
          f"(folder: {result['folder']['apparent_bytes'] / 1e6:.0f} MB in files, "
          f"{result['folder']['disk_bytes'] / 1e6:.0f} MB on disk)", flush=True)

    project, env = download_only(out)
    result["noop_pack"] = common.noop_repros(project, env)
    print(f"  no-op dvc repro, data.path = the pack: {result['noop_pack']['noop_median_s']:.2f} s "
          f"(first repro {result['noop_pack']['first_repro_s']:.0f} s)", flush=True)

    changed = folder / "a" / "0.png"
    original = changed.read_bytes()
    before = {path.name: path.stat().st_ino for path in out.glob("shard-*")}
    try:
        changed.write_bytes(different_image(images))
        result["one_changed"] = pack(folder, out)
        after = {path.name: path.stat().st_ino for path in out.glob("shard-*")}
        new = [name for name in after if before.get(name) != after[name]]
        result["one_changed"]["files_written"] = sorted(new)
        result["one_changed"]["bytes_written"] = sum((out / name).stat().st_size for name in new) \
            + (out / "pack.json").stat().st_size
        result["one_changed"]["status_s"], status = dvc_status_seconds(project, env)
        assert "changed deps" in status, status
        print(f"  one changed image: repack {result['one_changed']['seconds']:.1f} s, "
              f"{len(new) // 2} shard(s) and index(es), {result['one_changed']['bytes_written'] / 1e6:.1f} MB to push; "
              f"dvc status {result['one_changed']['status_s']:.2f} s", flush=True)
    finally:
        changed.write_bytes(original)
        pack(folder, out)
    shutil.rmtree(project.parent, ignore_errors=True)

    if raw_folder:
        project, env = download_only(folder)
        result["noop_folder"] = common.noop_repros(project, env)
        print(f"  no-op dvc repro, data.path = the folder: {result['noop_folder']['noop_median_s']:.2f} s "
              f"(first repro {result['noop_folder']['first_repro_s']:.0f} s)", flush=True)
        shutil.rmtree(project.parent, ignore_errors=True)
    return result


def different_image(seed: int) -> bytes:
    """A 16x16 PNG unlike the folder's (its pixels from another seed)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed + 1).integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--raw-folder", action="store_true",
                        help="also time a no-op dvc repro with the raw folder as data.path (largest size)")
    args = parser.parse_args()
    load = common.load_now()
    started = time.perf_counter()
    runs = {}
    for images in sorted(args.images):
        print(f"pack of a {images:,}-file folder:", flush=True)
        runs[str(images)] = measure(images, args.raw_folder and images == max(args.images))
    largest = runs[str(max(args.images))]
    figures = {
        "images": sorted(args.images), "runs": runs,
        "checks": {
            # The pack alone against the folder; the pipeline's own copies (data/raw, data/split) are not counted.
            "pack_disk_ratio": largest["disk_ratio"],
            "pass_pack_disk_ratio": bool(largest["disk_ratio"] <= TARGET_DISK_RATIO),
            "noop_pack_s": largest["noop_pack"]["noop_median_s"],
            "pass_noop_pack": bool(largest["noop_pack"]["noop_median_s"] <= TARGET_NOOP_S),
        },
        "wall_s": time.perf_counter() - started,
    }
    path = common.write_result("pack", figures, load)
    print(f"written to {path.relative_to(common.ROOT)} in {figures['wall_s'] / 60:.1f} min "
          f"(cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
