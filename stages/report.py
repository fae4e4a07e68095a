"""report: the leaderboard of every model stage from metrics/*.json, the MLflow runs behind it, the registry."""

from imgclf import paths
from imgclf.errors import UserError
from imgclf.pipeline import report, stage
from imgclf.tracking import queries, registry, store


def run(params, tracked) -> None:
    frame = report.leaderboard(report.rows_from_files(), params.report.sort_by)
    for path in report.write(frame):
        tracked.log_artifact(path)
    runs = queries.runs_from_lock(tracked.client, params.mlflow.experiment)
    linked, missing = report.with_runs(frame, runs, queries.run_link(tracked.uri))
    where = store.display_uri(tracked.uri)
    report.write_runs(linked, missing, where)
    tracked.log_artifact(report.RUNS_FILE)
    if report.plot_latency(linked):
        tracked.log_artifact(paths.LATENCY_PLOT)
    tracked.set_tags({f"report.{name}.run_id": run_id for name, run_id in zip(linked["stage"], linked["run_id"], strict=True)
                      if run_id})
    # The pipeline's run: the leaderboard, the champion's figures, a link to every stage's run
    # (restored from DVC's run-cache or not).
    best = str(frame["stage"].iloc[0]) if not frame.empty else None
    if best:
        tracked.log_image(report.champion_page(best))
    headline = {f"champion.{key}": frame[key].iloc[0] for key in report.SORT_ASCENDING if best and frame[key].notna().iloc[0]}
    tracked.log_pipeline({f"imgclf.stage_run.{name}": found.info.run_id for name, found in runs.items()}
                         | ({"imgclf.champion_stage": best} if best else {}),
                         headline, [paths.REPORTS / "leaderboard.md", report.RUNS_FILE])
    print(report.render(linked, with_ids=True), flush=True)
    if missing:
        print(report.missing_line(missing, where), flush=True)
    # The registry is MLflow's, not a DVC output: the best stage's classifier becomes the champion.
    name = params.mlflow.registered_model
    if best is None or best not in runs:
        print(f"report: not registered: the best stage, {best}, has no MLflow run in {where}", flush=True)
        return
    try:
        done = registry.register_champion(tracked.client, tracked.uri, name, runs[best])
    except UserError as error:
        print(f"report: not registered: {error}", flush=True)
        return
    tracked.set_tags({"report.champion": f"{done.name}/{done.version}"})
    print(f"report: {registry.champion_uri(name)} = version {done.version} ({done.stage}, run {done.run_id}"
          f"{', new' if done.created else ', unchanged winner'}; sorted by {params.report.sort_by})", flush=True)


if __name__ == "__main__":
    stage.main(run)
