"""split: data/raw -> data/split/{train,test}/<class>/ + manifest.csv, with counted skips."""

from imgclf import paths
from imgclf.data import split
from imgclf.pipeline import stage


def run(params, tracked) -> None:
    metrics = split.split(params)
    total = metrics["total"]
    print(f"split: {total['train']} train + {total['test']} test images, "
          f"{metrics['skipped']['count']} skipped, stored as {metrics['storage']} (data.storage)", flush=True)
    tracked.log_metrics({f"images_{name}": count for name, count in total.items()}
                        | {"skipped": metrics["skipped"]["count"]})
    tracked.log_artifact(paths.MANIFEST)
    tracked.log_artifact(paths.metrics_file("split"))


if __name__ == "__main__":
    stage.main(run)
