"""bottleneck: every image of data/split through the backbone, into data/features/{train,test}.npz."""

from imgclf import paths
from imgclf.data import tfdata
from imgclf.models import backbones
from imgclf.pipeline import stage
from imgclf.training import determinism
from imgclf.transfer import bottleneck


def run(params, tracked) -> None:
    backbone = params.backbone
    facts = backbones.describe(backbone)
    tracked.set_tags({"backbone": facts["backbone"], "weights": facts["weights"]})
    backbones.check(backbone)
    weights = backbones.resolve_weights(backbone)  # an offline `imagenet` stops here, before any output
    determinism.seed_everything(params.seed)
    determinism.set_precision(backbone.precision)
    inputs = {}
    for split in paths.SPLITS:
        dataset, class_names, count = tfdata.load_ordered(params, split, params.bottleneck.batch_size)
        inputs[split] = (dataset, count)
    extractor = backbones.build_extractor(backbone, params.seed, weights, tfdata.image_shape(params))
    runs = bottleneck.write_features(extractor, inputs, class_names, facts, paths.FEATURES)
    speed = bottleneck.throughput(runs, backbones.forward_flops(backbones.base_of(extractor)))
    # Run-specific figures: MLflow only, never DVC outputs (they differ on every run).
    tracked.log_metrics({f"bottleneck_{name}": value for name, value in speed.items()})
    print(
        f"bottleneck: {speed['images']} images through {facts['backbone']} "
        f"(weights {facts['weights']}, {facts['precision']}) in {speed['seconds']:.1f} s: "
        f"{speed['images_per_s']:.0f} images/s, {speed['gflops_per_s']:.0f} GFLOP/s "
        f"(after the first batch: {speed['steady_images_per_s']:.0f} images/s, "
        f"{speed['steady_gflops_per_s']:.0f} GFLOP/s; {speed['gflop_per_image']:.3f} GFLOP/image)",
        flush=True,
    )


if __name__ == "__main__":
    stage.main(run)
