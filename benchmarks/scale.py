"""Scale: wall time and peak RSS of the download + split stages on 25,000 and 50,000 JPEGs, and of
the bottleneck stage on 1,000 vs 10,000 images.

The archive is generated once (benchmarks/work/archives/): Kaggle's layout, train/cat.N.jpg and
train/dog.N.jpg, small photo-like JPEGs of 48-96 px. The 50,000-image archive holds the 25,000
images twice under new names (train/cat.12500.jpg ...), each copy made distinct by a JPEG comment
segment (the split skips a file whose bytes repeat another's, so byte-equal copies would all be skipped).
Each stage runs as the pipeline runs it, `python -m stages.<stage>` in a workspace with its own
params.yaml and MLflow store; the figures are that process's wall time and peak RSS (ru_maxrss of
the stage process and any child it waited for, read by common.run_measured's small launcher). The split takes every image
(25,000: 10,000 train + 2,500 test per class; 50,000: twice that).
Bottleneck: VGG16 (weights none) at 32x32 on the first 1,000 and 10,000 images of the 25,000-image
split (train 400/4,000 + test 100/1,000 per class, symlinked), in mixed_bfloat16 to keep it fast
(float32 is ~3x slower on this machine and holds the same buffers).

    python benchmarks/scale.py [--images 25000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

TARGET_RSS_MIB = 500.0
FLAT_TOLERANCE = 0.10  # "flat": peak RSS at 2x the archive within 10 % (+ a few MiB) of 1x


def doubled_zip(source: Path, images: int) -> Path:
    """An archive with every image of `source` twice (the copy under new numbers, a comment making its bytes new)."""
    target = source.parent / f"train-{images}-distinct.zip"
    if target.is_file():
        return target
    temp = target.with_suffix(".partial")
    with zipfile.ZipFile(source) as reader, zipfile.ZipFile(temp, "w", zipfile.ZIP_STORED) as writer:
        names = [info.filename for info in reader.infolist() if not info.is_dir()]
        offset = len(names) // 2
        for name in names:
            data = reader.read(name)
            writer.writestr(name, data)
            folder, label, number, extension = _parts(name)
            writer.writestr(f"{folder}/{label}.{int(number) + offset}.{extension}", _commented(data))
    temp.rename(target)
    return target


def _commented(jpeg: bytes) -> bytes:
    """The same image, other bytes: a COM segment (FF FE, length 6, "copy") right after the SOI marker."""
    return jpeg[:2] + b"\xff\xfe\x00\x06copy" + jpeg[2:]


def _parts(name: str) -> tuple[str, str, str, str]:
    folder, file_name = name.rsplit("/", 1)
    label, number, extension = file_name.split(".")
    return folder, label, number, extension


def run_stage(workspace: Path, stage: str) -> dict:
    result = common.run_measured([sys.executable, "-m", f"stages.{stage}"], workspace, common.stage_env(workspace))
    result["output_tail"] = result.pop("output").splitlines()[-2:]
    return result


def download_and_split(archive: Path, images: int) -> dict:
    workspace = common.WORK / f"scale_{images}_ws"
    shutil.rmtree(workspace, ignore_errors=True)
    per_class = images // 2
    common.write_params(workspace, {
        "data.source": "dogs-vs-cats", "data.archive": str(archive),
        "data.train_per_class": per_class * 4 // 5, "data.test_per_class": per_class // 5,
        "mlflow.log_model": False,
    })
    download = run_stage(workspace, "download")
    split = run_stage(workspace, "split")
    files = sum(1 for _ in (workspace / "data" / "split").rglob("*.jpg"))
    print(f"  {images} images: download {download['seconds']:.1f} s, {download['peak_rss_mib']:.0f} MiB; "
          f"split {split['seconds']:.1f} s, {split['peak_rss_mib']:.0f} MiB ({files} files)", flush=True)
    return {"archive_mib": archive.stat().st_size / 2**20, "download": download, "split": split,
            "split_files": files, "workspace": workspace}


def bottleneck(split_root: Path, train_per_class: int, test_per_class: int) -> dict:
    images = 2 * (train_per_class + test_per_class)
    workspace = common.WORK / f"scale_bottleneck_{images}_ws"
    shutil.rmtree(workspace, ignore_errors=True)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for class_folder in sorted((split_root / split).iterdir()):
            target = workspace / "data" / "split" / split / class_folder.name
            target.mkdir(parents=True)
            for path in sorted(class_folder.iterdir())[:count]:
                (target / path.name).symlink_to(path)
    common.write_params(workspace, {
        "data.source": "dogs-vs-cats", "image.size": [32, 32], "backbone.name": "vgg16",
        "backbone.weights": "none", "backbone.precision": "mixed_bfloat16", "mlflow.log_model": False,
    })
    result = run_stage(workspace, "bottleneck")
    features_mib = sum(path.stat().st_size for path in (workspace / "data" / "features").iterdir()) / 2**20
    print(f"  bottleneck {images} images: {result['seconds']:.1f} s, {result['peak_rss_mib']:.0f} MiB "
          f"(features {features_mib:.1f} MiB)", flush=True)
    shutil.rmtree(workspace, ignore_errors=True)
    return {"images": images, "features_mib": features_mib, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=25_000)
    parser.add_argument("--keep", action="store_true", help="keep the workspaces in benchmarks/work")
    args = parser.parse_args()
    load = common.load_now()
    started = time.perf_counter()
    made = time.perf_counter()
    single = common.kaggle_zip(args.images)
    double = doubled_zip(single, 2 * args.images)
    generate_s = time.perf_counter() - made
    print(f"download + split ({single.name}, {double.name}):", flush=True)
    runs = {str(args.images): download_and_split(single, args.images),
            str(2 * args.images): download_and_split(double, 2 * args.images)}
    print("bottleneck:", flush=True)
    split_root = runs[str(args.images)]["workspace"] / "data" / "split"
    small = bottleneck(split_root, 400, 100)
    large = bottleneck(split_root, 4000, 1000)
    one, two = runs[str(args.images)], runs[str(2 * args.images)]
    checks = {}
    for stage in ("download", "split"):
        peak_one, peak_two = one[stage]["peak_rss_mib"], two[stage]["peak_rss_mib"]
        checks[stage] = {
            "peak_rss_mib": [peak_one, peak_two], "growth": peak_two / peak_one - 1,
            "pass_under_500_mib": bool(max(peak_one, peak_two) <= TARGET_RSS_MIB),
            "pass_flat": bool(peak_two <= peak_one * (1 + FLAT_TOLERANCE) + 5),
        }
    checks["bottleneck"] = {
        "peak_rss_mib": [small["peak_rss_mib"], large["peak_rss_mib"]],
        "growth": large["peak_rss_mib"] / small["peak_rss_mib"] - 1,
        "pass_flat": bool(large["peak_rss_mib"] <= small["peak_rss_mib"] * (1 + FLAT_TOLERANCE) + 5),
    }
    for run in runs.values():
        workspace = run.pop("workspace")
        if not args.keep:
            shutil.rmtree(workspace, ignore_errors=True)
    figures = {"images": args.images, "generate_s": generate_s, "download_split": runs,
               "bottleneck": {"1000": small, "10000": large}, "checks": checks,
               "wall_s": time.perf_counter() - started}
    path = common.write_result("scale", figures, load)
    print(f"written to {path.relative_to(common.ROOT)} (load before {load})")


if __name__ == "__main__":
    main()
