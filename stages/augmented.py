"""augmented: the same CNN as baseline, trained on randomly transformed images (one fused affine each)."""

from imgclf import augmentation, determinism, distribution, featurewise, fit, publish, stage
from imgclf.data import pipeline
from imgclf.models import architectures

SECTIONS = ["seed", "data", "image", "mlflow", "cnn", "augmentation", "train", "augmented"]


def run(params, tracked) -> None:
    settings = params.augmented
    determinism.seed_everything(params.seed)
    determinism.set_precision(params.cnn.precision)
    data = pipeline.load_split(params, settings.batch_size, heads=True)  # one softmax head per label column
    statistics = featurewise.fit(data.train, params.augmentation)  # normalization, whitening: fitted on train
    train = augmentation.augment_dataset(data.train, params.augmentation, params.seed)  # endless
    with distribution.scope(params.train):  # one device, or one replica per device (mirrored)
        standardize = featurewise.layers(statistics, data.input_shape)  # inside the model: serving sees them
        model = architectures.build(data.input_shape, len(data.class_names), params.cnn, standardize, data.heads)
        fitted = fit.fit(
            model, train, data.validation, settings, "augmented", data.class_counts,
            steps_per_epoch=data.steps_per_epoch,
        )
    publish.model_stage(
        "augmented", model, fitted, data.test, data.class_names, tracked, params,
        extra_metrics={"train_images": data.train_size}, heads=data.heads,
    )


if __name__ == "__main__":
    stage.main("augmented", SECTIONS, run)
