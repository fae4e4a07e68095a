"""report: a leaderboard of every model stage from the MLflow runs that produced the current outputs."""

from imgclf import report, stage

SECTIONS = ["report", "mlflow"]


def run(params, tracked) -> None:
    frame = report.build_report(params, tracked)
    print(report.render(frame), flush=True)


if __name__ == "__main__":
    stage.main("report", SECTIONS, run)
