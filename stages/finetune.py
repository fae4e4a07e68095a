"""finetune: the backbone with top's trained head, last block trainable, on augmented images."""

from imgclf import finetuning, stage


def work(params, run) -> None:
    finetuning.finetune(params, run)


if __name__ == "__main__":
    stage.run(
        "finetune",
        ["seed", "data", "image", "mlflow", "backbone", "augmentation", "finetune"],
        work,
    )
