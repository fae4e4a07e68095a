"""The documentation: generated pages agree with their sources, the site builds strictly and opens in Chromium."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

from imgclf import cli
from imgclf.pipeline import stages

from helpers.browser import CHROMIUM, launch
from helpers.workspace import REPO

README_LINES = 250


def _load_generate(root):
    spec = importlib.util.spec_from_file_location(f"generate_{abs(hash(str(root)))}", root / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generate():
    return _load_generate(REPO)


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """The committed project (`git archive HEAD`): what a clone starts from, before `make repro` rewrites
    metrics/ and reports/ with the figures of the machine it runs on (another CPU family gives other floats)."""
    target = tmp_path_factory.mktemp("committed")
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=REPO, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built with --strict (a broken link or anchor, a page outside the nav fails)."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
                          cwd=REPO, capture_output=True, text=True, env=os.environ | {"NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def test_every_committed_generated_page_and_block_agrees_with_its_source(committed):
    stale = [path.relative_to(committed).as_posix() for path, text in _load_generate(committed).wanted().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert not stale, f"run `make docs` and commit: {stale}"


def test_the_results_table_shows_each_stage_metrics_file(generate):
    block = generate.results_block()
    for stage in stages.MODEL_STAGES:
        path = REPO / "metrics" / f"{stage}.json"
        metrics = json.loads(path.read_text())
        (row,) = [line for line in block.splitlines() if f"| `{stage}` |" in line]
        assert f"| {metrics['accuracy']:.3f} | {metrics['f1_macro']:.3f} |" in row
    accuracies = [float(line.split("|")[3]) for line in block.splitlines() if line.startswith("| ") and "`" in line]
    assert accuracies == sorted(accuracies, reverse=True) and len(accuracies) == len(stages.MODEL_STAGES)


def test_the_performance_page_holds_the_benchmark_results(generate):
    page = (REPO / "docs" / "performance.md").read_text()
    repro = json.loads((REPO / "benchmarks" / "results" / "end_to_end.json").read_text())
    assert f"| end_to_end | offline default dvc repro | {repro['repro']['seconds']:.0f} s |" in page
    readme = (REPO / "README.md").read_text() + (REPO / "docs" / "getting-started.md").read_text()
    assert f"{repro['repro']['seconds'] / 60:.1f} min" in readme


def _keys(node: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        found += _keys(value, name + ".") if isinstance(value, dict) else [name]
    return found


def test_the_params_reference_has_every_key_with_what_it_allows():
    page = (REPO / "docs" / "reference" / "params.md").read_text()
    keys = _keys(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert len(keys) > 60
    for key in keys:
        (row,) = [line for line in page.splitlines() if line.startswith(f"| `{key}` |")]
        assert row.count("|") >= 5 and row.split("|")[3].strip(), f"{key}: no allowed values"
    assert "| `backbone.name` | `vgg16` | one of vgg16, resnet50, inception_v3, densenet121, mobilenet_v2 |" in page


def test_the_cli_reference_has_every_subcommand():
    page = (REPO / "docs" / "reference" / "cli.md").read_text()
    for command in cli.COMMANDS:
        assert f"\n## {command}\n" in page
        assert f"usage: python -m imgclf {command}" in page


def test_the_error_reference_has_every_user_error(generate):
    page = (REPO / "docs" / "reference" / "errors.md").read_text()
    found = generate._errors()
    assert len(found) > 100
    for module, message in found:
        assert f"| `{module}` | `` {message} `` |" in page


def test_the_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LINES
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).is_file(), link


def test_user_docs_name_no_commit():
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    words = {word for page in pages for word in re.findall(r"\b[0-9a-f]{7,40}\b", page.read_text())}
    commits = [word for word in words if subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{word}^{{commit}}"], cwd=REPO, capture_output=True).returncode == 0]
    assert not commits, f"commit hashes in user docs: {commits}"


def test_every_page_is_in_the_site(site):
    built = {path.relative_to(site).with_suffix(".md").as_posix() for path in site.rglob("*.html")}
    written = {path.relative_to(REPO / "docs").as_posix() for path in (REPO / "docs").rglob("*.md")}
    assert written <= built, written - built


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_built_site_opens_in_chromium(site):
    with launch() as browser:
        page = browser.new_page()
        failed = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.goto((site / "index.html").as_uri())
        assert page.title().startswith("imgclf")
        assert page.locator("h1").first.inner_text().startswith("imgclf")
        assert page.locator("table").count() >= 2  # where to go, the results
        page.get_by_role("link", name="params.yaml").first.click()
        page.wait_for_load_state()
        assert page.url.endswith("reference/params.html")
        row = page.locator("tr", has=page.locator("code", has_text="data.source")).first
        assert "mnist-sample" in row.inner_text()
        assert not [url for url in failed if url.startswith("file:")], failed
