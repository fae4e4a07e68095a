"""report: the leaderboard of every model stage from metrics/*.json, with the MLflow runs behind them."""

from imgclf import report, stage
from imgclf.tracking import queries, store

SECTIONS = ["report", "mlflow"]


def run(params, tracked) -> None:
    frame = report.leaderboard(report.rows_from_files(), params.report.sort_by)
    for path in report.write(frame):
        tracked.log_artifact(path)
    runs = queries.runs_from_lock(tracked.client, params.mlflow.experiment)
    linked, missing = report.with_runs(frame, runs, queries.run_link(tracked.uri))
    where = store.display_uri(tracked.uri)
    report.write_runs(linked, missing, where)
    tracked.log_artifact(report.RUNS_FILE)
    tracked.set_tags({f"report.{name}.run_id": run_id for name, run_id in zip(linked["stage"], linked["run_id"], strict=True)
                      if run_id})
    print(report.render(linked, with_ids=True), flush=True)
    if missing:
        print(report.missing_line(missing, where), flush=True)


if __name__ == "__main__":
    stage.main("report", SECTIONS, run)
