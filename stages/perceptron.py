"""perceptron: the chapter's softmax regression in low-level TensorFlow, on data/split."""

from imgclf import stage
from imgclf.models import perceptron


def work(params, run) -> None:
    perceptron.train_perceptron(params, run)


if __name__ == "__main__":
    stage.run("perceptron", ["seed", "data", "image", "mlflow", "perceptron"], work)
