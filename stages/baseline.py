"""baseline: the chapter's simple CNN (or another cnn.architecture) on data/split, without augmentation."""

from imgclf.data import tfdata
from imgclf.models import architectures
from imgclf.pipeline import publish, stage
from imgclf.training import determinism, distribution, fit


def run(params, tracked) -> None:
    settings = params.baseline
    determinism.seed_everything(params.seed)
    determinism.set_precision(params.cnn.precision)
    data = tfdata.load_split(params, settings.batch_size, all_label_columns=True)  # one softmax head per label column
    with distribution.scope(params.train):  # one device, or one replica per device (mirrored)
        model = architectures.build(data.input_shape, len(data.class_names), params.cnn, label_heads=data.label_heads)
        fitted = fit.fit(model, data.train, data.validation, settings, "baseline", data.class_counts)
    publish.model_stage(
        "baseline", model, fitted, data.test, data.class_names, tracked, params,
        extra_metrics={"train_images": data.train_size}, label_heads=data.label_heads,
    )


if __name__ == "__main__":
    stage.main(run)
