"""End to end: the MLflow UI, started on a free loopback port, shows a run per stage, in headless Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.browser import CHROMIUM, launch
from helpers.servers import free_port, wait_until_up
from helpers.workspace import REPO

pytestmark = pytest.mark.browser

STAGES = ("perceptron", "baseline", "augmented")
ACCURACY = {"perceptron": 0.61, "baseline": 0.72, "augmented": 0.83}
@pytest.fixture
def store_with_stage_runs(workspace: Path) -> tuple[str, dict[str, str]]:
    """A real SQLite store with one run per stage, logged through imgclf.tracking."""
    from imgclf.tracking import runs

    run_ids = {}
    for offset, stage in enumerate(STAGES):
        with runs.stage_run(stage, "image-classification", {"seed": 42, f"{stage}.epochs": 2}) as run:
            run.log_history({"accuracy": [0.5 + offset / 10, 0.6 + offset / 10], "val_accuracy": [0.4, 0.5]})
            run.log_metrics({"accuracy": ACCURACY[stage], "f1_macro": 0.5})
            run_ids[stage] = run.run_id
    return f"sqlite:///{workspace / 'mlflow.db'}", run_ids


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run does it)")
def test_mlflow_ui_shows_runs_and_compare_view(store_with_stage_runs, workspace):
    uri, run_ids = store_with_stage_runs
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
         "--default-artifact-root", (workspace / "mlartifacts").as_uri(),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    screenshot = REPO / "reports" / "mlflow-ui-compare.png"
    screenshot.parent.mkdir(exist_ok=True)
    try:
        wait_until_up(url, server)
        with launch() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/#/experiments/1/runs")
            parent = page.locator("[role=row]", has=page.get_by_text(re.compile(r"^pipeline "))).first
            parent.wait_for(timeout=60_000)
            parent.locator("button").first.click()  # the stage runs are nested under their pipeline's run
            for stage in STAGES:
                page.get_by_text(stage, exact=True).first.wait_for(timeout=60_000)
            run = run_ids["baseline"]
            page.goto(f"{url}/#/experiments/1/runs/{run}")
            page.get_by_text("Metrics (4)").first.wait_for(timeout=60_000)  # accuracy, f1, 2 curves
            page.get_by_text(str(ACCURACY["baseline"]), exact=True).first.wait_for(timeout=60_000)
            compare = '["{}","{}"]'.format(run_ids["baseline"], run_ids["augmented"])
            page.goto(f"{url}/#/compare-runs?runs={compare}&experiments=[\"1\"]")
            page.get_by_text("Comparing 2 Runs").first.wait_for(timeout=60_000)
            for stage in ("baseline", "augmented"):
                page.get_by_text(stage, exact=True).first.wait_for(timeout=60_000)
                page.get_by_text(str(ACCURACY[stage]), exact=True).first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert screenshot.stat().st_size > 10_000
