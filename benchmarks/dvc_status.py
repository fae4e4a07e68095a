"""How fast is DVC on a 25,000-image split? `dvc status` (cold, warm) and a no-op `dvc repro`.

Builds a temp git + DVC repo whose one stage writes a split of tiny generated images (JPEG and
PNG, two classes), runs it, then times DVC. Two layouts of the same images are compared:
  folder: data/split/{train,test}/<class>/*  as one DVC folder output (what the pipeline uses)
  zip:    data/split.zip                     as one file output (the alternative)
"Cold" = DVC's hash cache (the state db in its site cache dir) deleted first, so every file is
hashed again, as after a fresh clone + `dvc pull`/checkout; "warm" = repeated with the cache.
The OS page cache is not dropped (that would disturb other work on the machine).

    python benchmarks/dvc_status.py [--images 25000] [--keep]

Prints the figures and writes benchmarks/results/dvc_status.json with the machine noted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import filesystem, machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "dvc_status.json"

GENERATOR = '''
"""Write N tiny images: 80% train, 20% test, two classes, alternating JPEG and PNG."""
import io, sys, zipfile
from pathlib import Path
import numpy as np
from PIL import Image

layout, count = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
def image_bytes(index):
    pixels = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    fmt = "JPEG" if index % 2 == 0 else "PNG"
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue(), "jpg" if fmt == "JPEG" else "png"
def names():
    for index in range(count):
        split = "train" if index % 5 else "test"
        label = ("cat", "dog")[index % 2]
        data, extension = image_bytes(index)
        yield f"{split}/{label}/{label}.{index}.{extension}", data
if layout == "folder":
    root = Path("data/split")
    for name, data in names():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
else:
    Path("data").mkdir(exist_ok=True)
    with zipfile.ZipFile("data/split.zip", "w", zipfile.ZIP_STORED) as archive:
        for name, data in names():
            archive.writestr(name, data)
'''


def dvc_env(repo: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DVC_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(repo.parent / f"{repo.name}-site-cache"),
        GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com",
    )
    return env


def timed(repo: Path, *command: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(list(command), cwd=repo, env=dvc_env(repo), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {repo}:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def build(root: Path, layout: str, images: int) -> Path:
    repo = root / layout
    repo.mkdir()
    (repo / "make_images.py").write_text(GENERATOR)
    out = "data/split" if layout == "folder" else "data/split.zip"
    (repo / "dvc.yaml").write_text(
        f"stages:\n  split:\n    cmd: python make_images.py {layout} {images}\n"
        f"    deps:\n      - make_images.py\n    outs:\n      - {out}\n"
    )
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-q", "-m", "bench"]):
        timed(repo, *command)
    return repo


def measure(repo: Path, repeats: int) -> dict:
    site_cache = Path(dvc_env(repo)["DVC_SITE_CACHE_DIR"])
    figures: dict = {}
    figures["repro_first_s"], _ = timed(repo, "dvc", "repro")
    timed(repo, "git", "add", "-A")
    timed(repo, "git", "commit", "-q", "-m", "lock")
    cold = []
    for _ in range(repeats):
        shutil.rmtree(site_cache, ignore_errors=True)
        seconds, output = timed(repo, "dvc", "status")
        assert "up to date" in output, output
        cold.append(seconds)
    warm = []
    for _ in range(repeats):
        seconds, output = timed(repo, "dvc", "status")
        assert "up to date" in output, output
        warm.append(seconds)
    noop = []
    for _ in range(repeats):
        seconds, output = timed(repo, "dvc", "repro")
        assert "didn't change, skipping" in output, output
        noop.append(seconds)
    figures |= {
        "status_cold_s": cold, "status_warm_s": warm, "repro_noop_s": noop,
        "status_cold_median_s": statistics.median(cold), "status_warm_median_s": statistics.median(warm),
        "repro_noop_median_s": statistics.median(noop),
    }
    data = repo / "data"
    files = [path for path in data.rglob("*") if path.is_file() and path.name != ".gitignore"]
    cache = repo / ".dvc" / "cache"
    figures["workspace_files"] = len(files)
    figures["workspace_bytes"] = sum(path.stat().st_size for path in files)
    figures["cache_files"] = sum(1 for path in cache.rglob("*") if path.is_file())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp repos")
    args = parser.parse_args()
    (HERE / "work").mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="dvc-status-", dir=HERE / "work"))
    results = {"images": args.images, "repeats": args.repeats, "machine": machine_info(),
               "filesystem": filesystem(root), "layouts": {}}
    try:
        for layout in ("folder", "zip"):
            print(f"{layout}: generating {args.images} images and timing DVC ...", flush=True)
            results["layouts"][layout] = measure(build(root, layout, args.images), args.repeats)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["machine"]["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    machine = results["machine"]
    print(f"\n{args.images} images on {machine['cpu_model']} ({machine['cpu_usable_cores']} cores, "
          f"{results['filesystem']}), DVC {machine['versions']['dvc']}, "
          f"load {machine['load_average_1_5_15'][0]} -> {machine['load_average_after'][0]}")
    print(f"{'layout':8} {'files':>7} {'first repro':>12} {'status cold':>12} {'status warm':>12} {'no-op repro':>12}")
    for layout, figures in results["layouts"].items():
        print(f"{layout:8} {figures['workspace_files']:>7} {figures['repro_first_s']:>11.1f}s "
              f"{figures['status_cold_median_s']:>11.1f}s {figures['status_warm_median_s']:>11.1f}s "
              f"{figures['repro_noop_median_s']:>11.1f}s")
    print(f"(medians of {args.repeats}; written to {RESULTS.relative_to(HERE.parent)})")


if __name__ == "__main__":
    main()
