"""top: the chapter's top classifier on data/features; saved composed with the backbone."""

from imgclf import paths
from imgclf.data import tfdata
from imgclf.models import backbones, heads
from imgclf.pipeline import publish, stage
from imgclf.training import determinism, distribution, fit
from imgclf.transfer import features


def run(params, tracked) -> None:
    settings, backbone = params.top, params.backbone
    facts = features.read_backbone_facts()
    tracked.set_tags({"backbone": facts["backbone"], "weights": facts["weights"]})
    weights = backbones.resolve_weights(backbone)  # the deployable model needs the backbone again
    determinism.seed_everything(params.seed)
    determinism.set_precision("float32")  # a small head on float32 features: nothing to gain
    data = features.load_split(settings.batch_size, params.data.validation_fraction, params.seed)
    with distribution.scope(params.train):  # one device, or one replica per device (mirrored)
        model = heads.top(data.feature_shape, len(data.class_names), settings.units, settings.dropout)
        fitted = fit.fit(model, data.train, data.validation, settings, "top", data.class_counts)
    # What a user deploys: images -> the very backbone bottleneck ran (same seed, weights) -> this head.
    determinism.set_precision(backbone.precision)
    extractor = backbones.build_extractor(backbone, params.seed, weights, tfdata.image_shape(params))
    classifier = heads.on_images(extractor, model, backbone, len(data.class_names), f"{backbone.name}_top")
    publish.model_stage(
        "top", model, fitted, data.test, data.class_names, tracked, params,
        image_model=classifier, internal_models={paths.top_head_file(): model},
        extra_metrics=facts | {"train_images": len(data.train_arrays[1])},
    )


if __name__ == "__main__":
    stage.main(run)
