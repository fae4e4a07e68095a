"""top: the chapter's top classifier on data/features, and a linear SVM beside it."""

from imgclf import determinism, features, fit, publish, stage, svm
from imgclf.models import heads

SECTIONS = ["seed", "data", "mlflow", "top"]


def run(params, tracked) -> None:
    settings = params.top
    facts = features.read_backbone_facts()
    tracked.set_tags({"backbone": facts["backbone"], "weights": facts["weights"]})
    determinism.seed_everything(params.seed)
    determinism.set_precision("float32")  # a small head on float32 features: nothing to gain
    data = features.load_split(settings.batch_size, params.data.validation_fraction, params.seed)
    model = heads.top(data.feature_shape, len(data.class_names), settings.units, settings.dropout)
    fitted = fit.fit(model, data.train, data.validation, settings, "top", data.class_counts)
    svm_accuracy = svm.accuracy(*data.train_arrays, *data.test, settings.svm_c, params.seed)
    print(f"top: linear SVM (C={settings.svm_c}) test accuracy {svm_accuracy:.4f}", flush=True)
    publish.model_stage(
        "top", model, fitted, data.test, data.class_names, tracked, log_model=params.mlflow.log_model,
        extra_metrics=facts | {"svm_accuracy": svm_accuracy, "train_images": len(data.train_arrays[1])},
    )


if __name__ == "__main__":
    stage.main("top", SECTIONS, run)
