"""The bottleneck stage's work: every image of data/split through the backbone, into data/features."""

from __future__ import annotations

from pathlib import Path

from imgclf import atomic, determinism, features, paths
from imgclf.data import pipeline
from imgclf.models import backbones
from imgclf.params import Params


def image_shape(params: Params) -> tuple[int, int, int]:
    """(height, width, channels) of the images the input pipeline yields."""
    channels = 1 if params.image.color_mode == "grayscale" else 3
    return (*params.image.size, channels)


def write_bottleneck(params: Params, target: Path = paths.FEATURES) -> dict[str, float]:
    """data/features/{train,test}.npz + classes.json + backbone.json; returns throughput figures.

    Weights are resolved first: an offline `imagenet` stops here, before anything is written.
    The folder appears in one rename, so a failed or killed run leaves no partial features.
    """
    backbone = params.backbone
    backbones.check_input_size(backbone.name, backbone.input_size)
    backbones.check_precision(backbone.precision)
    weights = backbones.resolve_weights(backbone)
    determinism.seed_everything(params.seed)
    determinism.set_precision(backbone.precision)
    batch_size = params.bottleneck.batch_size
    inputs = {
        split: pipeline.load_ordered(params, split, batch_size, rescale=False)
        for split in features.SPLITS
    }
    extractor = backbones.build_extractor(backbone, params.seed, weights, image_shape(params))
    runs: dict[str, features.Extraction] = {}
    with atomic.directory(target) as temp:
        for split, (dataset, _, count) in inputs.items():
            runs[split] = features.extract_to_npz(extractor, dataset, count, temp / f"{split}.npz")
        class_names = inputs["train"][1]
        atomic.write_json(temp / features.CLASSES_FILE, list(class_names))
        atomic.write_json(
            temp / features.BACKBONE_FILE,
            backbones.describe(backbone) | {"feature_shape": list(runs["train"].feature_shape)},
        )
    return throughput(runs, backbones.forward_flops(backbones.base_of(extractor)))


def throughput(runs: dict[str, features.Extraction], flops_per_image: int) -> dict[str, float]:
    """images/s and achieved GFLOP/s, over the whole pass and after each split's first batch."""
    images = sum(run.count for run in runs.values())
    seconds = sum(run.seconds for run in runs.values())
    steady = images / sum(run.count / run.steady_images_per_s for run in runs.values())
    return {
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "gflops_per_s": flops_per_image * images / seconds / 1e9,
        "steady_images_per_s": steady,
        "steady_gflops_per_s": flops_per_image * steady / 1e9,
        "gflop_per_image": flops_per_image / 1e9,
    }
