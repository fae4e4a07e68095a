"""finetune: the backbone with top's trained head, its last block (finetune.trainable) trained on augmented images."""

import keras

from imgclf import paths
from imgclf.data import tfdata
from imgclf.errors import UserError
from imgclf.inference import model_file
from imgclf.models import backbones, finetune
from imgclf.pipeline import publish, stage
from imgclf.training import augmentation, determinism, distribution, fit

TOP_MISSING = "run the top stage first (dvc repro top)"


def run(params, tracked) -> None:
    settings, backbone = params.finetune, params.backbone
    backbones.check(backbone)
    backbones.trained_blocks(backbone.name, settings.trainable)  # a params error before anything is built
    weights = backbones.resolve_weights(backbone)  # an offline `imagenet` stops here, before any output
    facts = backbones.describe(backbone)
    tracked.set_tags({"backbone": facts["backbone"], "weights": facts["weights"]})
    if not paths.top_head_file().is_file():
        raise UserError(f"{paths.top_head_file()}: not found: {TOP_MISSING}")
    determinism.seed_everything(params.seed)
    determinism.set_precision(backbone.precision)
    data = tfdata.load_split(params, settings.batch_size, all_label_columns=True)  # one softmax head per label column
    train = augmentation.augment_dataset(data.train, params.augmentation, params.seed)  # endless
    with distribution.scope(params.train):  # one device, or one replica per device (mirrored)
        # Loaded after seeding: Dropout's seed generator is created at load time.
        head = model_file.load(paths.top_head_file(), TOP_MISSING)
        model, frozen = finetune.build(backbone, params.seed, weights, head, data.input_shape, len(data.class_names),
                                       settings.trainable, data.label_heads)
        optimizer = keras.optimizers.SGD(learning_rate=settings.learning_rate, momentum=settings.momentum)
        fitted = fit.fit(
            model, train, data.validation, settings, "finetune", data.class_counts,
            steps_per_epoch=data.steps_per_epoch, optimizer=optimizer,
        )
    publish.model_stage(
        "finetune", model, fitted, data.test, data.class_names, tracked, params,
        extra_metrics=facts | {"frozen_layers": frozen, "train_images": data.train_size}, label_heads=data.label_heads,
    )


if __name__ == "__main__":
    stage.main(run)
