"""svm: the chapter's linear SVM on data/features, a model in its own right: calibrated, saved with its backbone, served."""

from imgclf import paths
from imgclf.data import tfdata
from imgclf.models import backbones, heads
from imgclf.pipeline import publish, stage
from imgclf.tracking import logged_models
from imgclf.training import determinism
from imgclf.transfer import features, svm


def run(params, tracked) -> None:
    settings, backbone = params.svm, params.backbone
    facts = features.read_backbone_facts()
    tracked.set_tags({"backbone": facts["backbone"], "weights": facts["weights"]})
    weights = backbones.resolve_weights(backbone)  # the deployable model needs the backbone again
    determinism.seed_everything(params.seed)
    data = features.load_arrays(params.data.validation_fraction, params.seed)  # top's rows: same hold-out
    model, fitted = svm.fit(*data.train, settings, params.seed)
    determinism.set_precision("float32")
    head = svm.as_keras(model, data.feature_shape)  # the same probabilities, as one Dense softmax layer
    # What a user deploys: images -> the very backbone bottleneck ran (same seed, weights) -> the SVM.
    determinism.set_precision(backbone.precision)
    extractor = backbones.build_extractor(backbone, params.seed, weights, tfdata.image_shape(params))
    classifier = heads.on_images(extractor, head, backbone, len(data.class_names), f"{backbone.name}_svm")
    publish.model_stage(
        "svm", head, fitted, data.test, data.class_names, tracked, params,
        image_model=classifier, files={paths.svm_file(): svm.to_bytes(model)},
        extra_metrics=facts | {"train_images": len(data.train[1]), "c": settings.c},
    )
    if params.mlflow.log_model:
        logged_models.log_sklearn_model(tracked, model, data.test[0][:5], {"stage": "svm", "class_names": list(data.class_names)},
                                 svm.TRUSTED_TYPES)


if __name__ == "__main__":
    stage.main(run)
