"""split: data/raw -> data/split/{train,test}/<class>/ + manifest.csv, with counted skips."""

from imgclf import paths, stage
from imgclf.data import split


def work(params, run) -> None:
    metrics = split.split(params)
    total = metrics["total"]
    print(f"split: {total['train']} train + {total['test']} test images, "
          f"{metrics['skipped']['count']} skipped", flush=True)
    run.log_metrics({f"images_{name}": count for name, count in metrics["total"].items()}
                    | {"skipped": metrics["skipped"]["count"]})
    run.log_artifact(paths.MANIFEST)
    run.log_artifact(paths.metrics_file("split"))


if __name__ == "__main__":
    stage.run("split", ["seed", "data"], work)
