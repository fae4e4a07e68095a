"""bottleneck: data/split -> data/features/{train,test}.npz (backbone features) + classes.json.

Not named bottleneck.py: `python stages/bottleneck.py` puts stages/ first on sys.path, and pandas'
optional `import bottleneck` (a PyPI package) would then import this script in the middle of mlflow's
import: a circular-import crash.
"""

from imgclf import extraction, stage
from imgclf.models import backbones


def work(params, run) -> None:
    facts = backbones.describe(params.backbone)
    run.set_tags({"backbone": facts["backbone"], "weights": facts["weights"]})
    speed = extraction.write_bottleneck(params)
    # Run-specific figures: MLflow only, never DVC metrics (they would differ on every repro).
    run.log_metrics({f"bottleneck_{name}": value for name, value in speed.items()})
    print(
        f"bottleneck: {speed['images']} images through {facts['backbone']} "
        f"(weights {facts['weights']}, {facts['precision']}) in {speed['seconds']:.1f} s: "
        f"{speed['images_per_s']:.0f} images/s, {speed['gflops_per_s']:.0f} GFLOP/s "
        f"(after the first batch: {speed['steady_images_per_s']:.0f} images/s, "
        f"{speed['steady_gflops_per_s']:.0f} GFLOP/s; {speed['gflop_per_image']:.3f} GFLOP/image)",
        flush=True,
    )


if __name__ == "__main__":
    stage.run("bottleneck", ["seed", "data", "image", "backbone", "bottleneck"], work)
