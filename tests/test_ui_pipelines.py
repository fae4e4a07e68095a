"""The MLflow UI as a user compares models: shared param columns, dataset digests, one parent row per pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imgclf import params as params_module
from imgclf.pipeline import stages
from imgclf.tracking import datasets, runs, shared_params

from helpers.browser import CHROMIUM, launch
from helpers.servers import free_port, wait_until_up
from helpers.workspace import REPO

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]
LEARNING_RATE = {"baseline": 0.001, "augmented": 0.002}
PIPELINES = ("exp-one", "exp-two")


@pytest.fixture
def two_pipelines(workspace, make_split, write_params, monkeypatch) -> dict[tuple[str, str], str]:
    """Two pipeline executions of baseline + augmented, logged as stage.main logs them (params, datasets)."""
    make_split(classes=("cat", "dog"), train=4, test=2)
    config = write_params({"baseline.learning_rate": LEARNING_RATE["baseline"],
                           "augmented.learning_rate": LEARNING_RATE["augmented"]})
    ids = {}
    for pipeline in PIPELINES:
        monkeypatch.setenv("IMGCLF_PIPELINE_ID", pipeline)
        monkeypatch.setenv("DVC_EXP_NAME", pipeline)
        for stage in (stages.get("baseline"), stages.get("augmented")):
            flat = params_module.flatten(params_module.section_dict(config, *stage.sections)) | shared_params.shared(stage, config)
            inputs = datasets.split_inputs(config.data.source, config.data.path)
            with runs.stage_run(stage.name, "image-classification", flat, config.data.source, inputs) as run:
                run.log_metrics({"accuracy": 0.7 if stage.name == "baseline" else 0.8})
                ids[(pipeline, stage.name)] = run.run_id
    return ids


def test_compare_page_lines_up_shared_params_and_runs_table_nests_stages_under_pipelines(two_pipelines, workspace):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{workspace / 'mlflow.db'}",
         "--default-artifact-root", (workspace / "mlartifacts").as_uri(), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    digest = datasets.split_inputs("mnist-sample", "")[0].dataset.digest
    shots = REPO / "reports"
    shots.mkdir(exist_ok=True)
    try:
        wait_until_up(url, server)
        with launch() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            baseline, augmented = two_pipelines[("exp-one", "baseline")], two_pipelines[("exp-one", "augmented")]
            page.goto(f'{url}/#/compare-runs?runs=["{baseline}","{augmented}"]&experiments=["1"]')
            page.get_by_text("Comparing 2 Runs").first.wait_for(timeout=60_000)
            for key, values in (("learning_rate", ("0.001", "0.002")), ("epochs", ("4", "4"))):
                row = page.locator("tr", has=page.get_by_text(key, exact=True)).first
                row.wait_for(timeout=60_000)
                cells = [cell.strip() for cell in row.inner_text().split("\t")]
                assert cells == [key, *values], cells  # one column per run, side by side
            row.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "mlflow-ui-shared-params.png"))

            page.goto(f"{url}/#/experiments/1/runs")
            for pipeline in PIPELINES:
                page.get_by_text(f"pipeline {pipeline}", exact=True).first.wait_for(timeout=60_000)
            assert page.get_by_text("baseline", exact=True).count() == 0  # stage runs are nested, collapsed
            parent = page.locator("[role=row]", has=page.get_by_text("pipeline exp-one", exact=True)).first
            parent.locator("button").first.click()  # the run name cell's expander
            for stage in ("baseline", "augmented"):
                page.get_by_text(stage, exact=True).first.wait_for(timeout=60_000)
            page.get_by_text(f"mnist-sample/train ({digest})").first.wait_for(timeout=60_000)
            page.get_by_text(f"mnist-sample/test ({digest})").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / "mlflow-ui-pipelines.png"), full_page=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
