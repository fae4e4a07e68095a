"""report: a leaderboard of every model stage from the MLflow runs that produced the current outputs."""

from imgclf import report, stage


def work(params, run) -> None:
    frame = report.build_report(params, run)
    print(report.render(frame), flush=True)


if __name__ == "__main__":
    stage.run("report", ["report", "mlflow"], work)
