"""augmented: the same simple CNN, trained on randomly transformed images (one fused affine each)."""

from functools import partial

from imgclf import augmentation, stage, training
from imgclf.models import cnn


def work(params, run) -> None:
    training.train_classifier(
        "augmented", params, run, params.augmented,
        partial(cnn.build_simple_cnn, cnn=params.cnn), precision=params.cnn.precision,
        augment=partial(augmentation.augment_dataset, augmentation=params.augmentation, seed=params.seed),
    )


if __name__ == "__main__":
    stage.run("augmented", ["seed", "data", "image", "mlflow", "cnn", "augmentation", "augmented"], work)
