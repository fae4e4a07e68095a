"""baseline: the chapter's simple CNN on data/split, without augmentation."""

from functools import partial

from imgclf import stage, training
from imgclf.models import cnn


def work(params, run) -> None:
    training.train_classifier(
        "baseline", params, run, params.baseline,
        partial(cnn.build_simple_cnn, cnn=params.cnn), precision=params.cnn.precision,
    )


if __name__ == "__main__":
    stage.run("baseline", ["seed", "data", "image", "mlflow", "cnn", "baseline"], work)
