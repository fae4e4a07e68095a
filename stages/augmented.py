"""augmented: the same CNN as baseline, trained on randomly transformed images (one fused affine each)."""

from imgclf.data import tfdata
from imgclf.models import architectures
from imgclf.pipeline import publish, stage
from imgclf.training import augmentation, determinism, distribution, fit, standardization


def run(params, tracked) -> None:
    settings = params.augmented
    determinism.seed_everything(params.seed)
    determinism.set_precision(params.cnn.precision)
    data = tfdata.load_split(params, settings.batch_size, all_label_columns=True)  # one softmax head per label column
    statistics = standardization.fit(data.train, params.augmentation)  # normalization, whitening: fitted on train
    train = augmentation.augment_dataset(data.train, params.augmentation, params.seed)  # endless
    with distribution.scope(params.train):  # one device, or one replica per device (mirrored)
        standardize = standardization.layers(statistics, data.input_shape)  # inside the model: serving sees them
        model = architectures.build(data.input_shape, len(data.class_names), params.cnn, standardize, data.label_heads)
        fitted = fit.fit(
            model, train, data.validation, settings, "augmented", data.class_counts,
            steps_per_epoch=data.steps_per_epoch,
        )
    publish.model_stage(
        "augmented", model, fitted, data.test, data.class_names, tracked, params,
        extra_metrics={"train_images": data.train_size}, label_heads=data.label_heads,
    )


if __name__ == "__main__":
    stage.main(run)
