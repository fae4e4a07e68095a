"""perceptron: the chapter's softmax regression in low-level TensorFlow, on data/split."""

import math

from imgclf.data import tfdata
from imgclf.models import perceptron
from imgclf.pipeline import publish, stage
from imgclf.training import determinism, lowlevel


def run(params, tracked) -> None:
    settings = params.perceptron
    determinism.seed_everything(params.seed)
    data = tfdata.load_split(params, settings.batch_size)
    model = perceptron.SoftmaxRegression(
        math.prod(data.input_shape), len(data.class_names), settings.init_stddev, settings.learning_rate, params.seed
    )
    fitted = lowlevel.train(model, data, settings, "perceptron")
    publish.model_stage(
        "perceptron", model.to_keras(data.input_shape), fitted, data.test, data.class_names, tracked, params,
        extra_metrics={"steps": settings.steps, "train_images": data.train_size},
    )


if __name__ == "__main__":
    stage.main(run)
