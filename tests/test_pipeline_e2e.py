"""The whole pipeline in a real DVC project on the tiny profile: what re-runs, and lineage to MLflow."""

from __future__ import annotations

import csv
import io
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from imgclf.params import apply_overrides
from imgclf.pipeline.stages import MODEL_STAGES

from helpers.browser import CHROMIUM, launch
from helpers.dvc_project import make_project, run
from helpers.workspace import REPO, STAGE_RUNS

ALL_STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
TINY = yaml.safe_load((REPO / "profiles" / "tiny.yaml").read_text())


def set_param(project: Path, dotted: str, value) -> None:
    apply_overrides(project / "params.yaml", {dotted: value})


def repro(project: Path) -> tuple[set[str], set[str]]:
    """dvc repro; (stages that ran, stages restored from the run-cache)."""
    output = run(["dvc", "repro"], project).stdout
    ran = set(re.findall(r"Running stage '([a-z_]+)'", output))
    restored = set(re.findall(r"Stage '([a-z_]+)' is cached - skipping run", output))
    return ran, restored


def stage_runs(project: Path, stage: str) -> list:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("image-classification")
    return [r for r in client.search_runs([experiment.experiment_id], STAGE_RUNS, max_results=1000)
            if r.data.tags["dvc.stage"] == stage]


def compare(project: Path, *args: str) -> str:
    return run([sys.executable, "-m", "imgclf", "compare", *args], project).stdout


def assert_champion_is_the_winner(project: Path) -> None:
    """The registry's champion is the leaderboard's best stage's run; one version per distinct winning run."""
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    linked = list(csv.DictReader(io.StringIO(compare(project, "--with-ids", "--format", "csv"))))
    champion = client.get_model_version_by_alias("imgclf", "champion")
    assert (champion.tags["stage"], champion.run_id) == (linked[0]["stage"], linked[0]["run_id"])
    versions = client.search_model_versions("name = 'imgclf'")
    assert len(versions) == len({version.run_id for version in versions})


def assert_plots_page_shows_the_mistakes(project: Path, out: Path) -> None:
    """`dvc plots show` renders every model stage's gallery (and the convolutional ones' Grad-CAM) as images.

    In headless Chromium where it is installed (CI installs it): each of them decoded on the page, and a
    screenshot of the page at reports/dvc-plots-show.png for a look.
    """
    run(["dvc", "plots", "show", "--out", str(out)], project)
    expected = [f"plots/{stage}/mistakes.png" for stage in MODEL_STAGES]
    expected += [f"plots/{stage}/gradcam.png" for stage in MODEL_STAGES if stage != "perceptron"]
    sources = {plot: "static/workspace_" + plot.replace("/", "_") for plot in expected}
    page_html = (out / "index.html").read_text()
    for plot, source in sources.items():
        assert f'<img src="{source}">' in page_html, plot
        assert (out / source).read_bytes() == (project / plot).read_bytes()
    if CHROMIUM is None:
        return
    screenshot = REPO / "reports" / "dvc-plots-show.png"
    screenshot.parent.mkdir(exist_ok=True)
    with launch() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto((out / "index.html").as_uri())
        page.wait_for_load_state("load")
        widths = dict(page.eval_on_selector_all(
            "img", "images => images.map(image => [image.getAttribute('src'), image.naturalWidth])"))
        page.screenshot(path=str(screenshot), full_page=True)
    for plot, source in sources.items():
        assert widths[source] > 0, (plot, widths)  # decoded by the browser, not a broken image


@pytest.mark.slow
def test_pipeline_reruns_exactly_what_changed_and_lineage_survives_the_run_cache(tmp_path):
    project = make_project(tmp_path / "project", ALL_STAGES, TINY)
    ran, _ = repro(project)
    assert ran == set(ALL_STAGES)
    leaderboard = (project / "reports" / "leaderboard.md").read_text()
    for stage in MODEL_STAGES:
        assert f"| {stage} " in leaderboard
    pipeline = stage_runs(project, "report")[0].data.tags["imgclf.pipeline_id"]
    assert leaderboard == "# Leaderboard\n\n" + compare(project, "--pipeline-id", pipeline)
    assert "up to date" in run(["dvc", "status"], project).stdout
    assert_champion_is_the_winner(project)
    assert_plots_page_shows_the_mistakes(project, tmp_path / "plots-page")

    assert repro(project) == (set(), set())  # nothing changed, nothing runs

    first_top = stage_runs(project, "top")
    set_param(project, "top.epochs", TINY["top.epochs"] + 1)
    ran, _ = repro(project)
    assert ran == {"top", "finetune", "report", "export"}  # export reads every model stage's model

    set_param(project, "top.epochs", TINY["top.epochs"])  # back: DVC restores top from its run-cache
    ran, restored = repro(project)
    assert {"top", "finetune"} <= restored and "top" not in ran
    assert len(stage_runs(project, "top")) == 2  # no new MLflow run for a restored stage...
    ids = compare(project, "--with-ids", "--format", "csv")
    assert first_top[0].info.run_id in ids  # ...but dvc.lock still resolves to the run behind it
    assert_champion_is_the_winner(project)
    # This execution's parent run links every stage's run, the restored top among them, and sums up.
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    latest_report = max(stage_runs(project, "report"), key=lambda r: r.info.start_time)
    parent = client.get_run(latest_report.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["imgclf.role"] == "pipeline" and parent.info.status == "FINISHED"
    assert parent.data.tags["imgclf.stage_run.top"] == first_top[0].info.run_id
    assert {f"imgclf.stage_run.{stage}" for stage in ALL_STAGES if stage != "report"} <= set(parent.data.tags)
    best = list(csv.DictReader(io.StringIO(compare(project, "--format", "csv"))))[0]
    assert parent.data.tags["imgclf.champion_stage"] == best["stage"]
    assert parent.data.metrics["champion.accuracy"] == float(best["accuracy"])
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"leaderboard.md", "runs.md"}

    # A teammate's clone with another (here: no) MLflow store: the same leaderboard, and one line
    # saying which runs it could not find.
    leaderboard = (project / "reports" / "leaderboard.csv").read_text()
    (project / "mlflow.db").unlink()
    shutil.rmtree(project / "mlartifacts")
    output = run(["dvc", "repro", "--force", "--single-item", "report"], project).stdout
    assert (project / "reports" / "leaderboard.csv").read_text() == leaderboard
    missing = [line for line in output.splitlines() if line.startswith("report: no MLflow run in ")]
    assert len(missing) == 1 and all(stage in missing[0] for stage in MODEL_STAGES)
    assert "up to date" in run(["dvc", "status"], project).stdout
