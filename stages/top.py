"""top: the chapter's top classifier (and a linear SVM beside it) on data/features."""

from imgclf import stage, transfer


def work(params, run) -> None:
    transfer.train_top(params, run)


if __name__ == "__main__":
    stage.run("top", ["seed", "data", "mlflow", "top"], work)
