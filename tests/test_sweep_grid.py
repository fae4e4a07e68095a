"""The sweep's grid: DVC's Hydra sweep syntax expanded, named, and every point checked before queueing."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from imgclf.errors import UserError
from imgclf.sweep import grid, outcome

from helpers.dvc_project import make_project, project_env, run


def test_the_cartesian_product_named_in_order(workspace):
    found = grid.points(["baseline.epochs=1,2", "seed=3,4", "cnn.filters=[4,8]"], "lr")
    assert [p.name for p in found] == ["lr-1", "lr-2", "lr-3", "lr-4"]
    assert {p.overrides for p in found} == {
        (f"baseline.epochs={epochs}", f"seed={seed}", "cnn.filters=[4,8]") for epochs in (1, 2) for seed in (3, 4)}


def test_numbering_continues_after_earlier_sweeps(workspace):
    found = grid.points(["seed=1,2"], "lr", taken=frozenset({"lr-1", "lr-2", "lr-x", "other-7"}))
    assert [p.name for p in found] == ["lr-3", "lr-4"]


@pytest.mark.parametrize("overrides, message", [
    (["baseline.epochz=1,2"], r"Could not override 'baseline\.epochz'\. \(params\.yaml has no such key"),
    (["seed=1", "train.distribute=multiworker"],
     r"params\.yaml: train\.distribute = multiworker: must be one of none, mirrored"),
])
def test_a_point_that_makes_a_bad_params_yaml_says_why(workspace, overrides, message):
    [point, *_] = grid.points(overrides, "lr")
    assert re.fullmatch(message + ".*", grid.invalid(point))
    assert grid.invalid(grid.points(["seed=1"], "lr")[0]) is None


@pytest.mark.parametrize("overrides, message", [
    (["baseline.epochs=[1,"], r"sweep -S baseline\.epochs=\[1,: "),
    ([], r"sweep: nothing to sweep: pass -S key=v1,v2"),
])
def test_a_sweep_that_does_not_parse_stops_before_anything_runs(workspace, overrides, message):
    with pytest.raises(UserError, match=message):
        grid.points(overrides, "lr")


def test_a_bad_name_prefix(workspace):
    with pytest.raises(UserError, match=r"sweep --name 'a b'"):
        grid.points(["seed=1"], "a b")


def test_the_command_line_exits_2_when_the_sweep_does_not_parse(workspace):
    done = subprocess.run([sys.executable, "-m", "imgclf", "sweep", "-S", "perceptron.steps=[0,"], cwd=workspace,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("imgclf: sweep -S perceptron.steps=[0,: "), done.stderr
    assert "Traceback" not in done.stderr and not (workspace / ".dvc").exists()


def test_outcome_lines_table_and_exit_code():
    point = grid.Point("lr-1", ("seed=1",))
    done = outcome.Outcome(point, accuracy={"baseline": 0.8, "top": 0.9}, seconds=12.4)
    failed = outcome.Outcome(grid.Point("lr-2", ("seed=2",)), error="imgclf: boom")
    assert done.line() == "sweep: lr-1 (seed=1) done in 12 s: best top accuracy 0.9000"
    assert failed.line() == "sweep: lr-2 (seed=2) FAILED: imgclf: boom"
    assert outcome.table([failed, done]).splitlines()[2:] == [
        "| lr-1 | seed=1 | top | 0.9000 | 12 |", "| lr-2 | seed=2 | FAILED |  |  |"]
    assert outcome.exit_code([done]) == 0 and outcome.exit_code([done, failed]) == 1
    show = [{"rev": "workspace", "experiments": None},
            {"rev": "abc", "experiments": [{"revs": [{"name": "lr-1", "data": {"metrics": {
                "metrics/baseline.json": {"data": {"accuracy": 0.75}}, "metrics/split.json": {"data": {"n": 3}}}}}]}]}]
    assert outcome.accuracies(show, "lr-1") == {"baseline": 0.75}
    assert outcome.accuracies(show, "lr-9") == {}


def test_error_line_prefers_the_stages_own_line():
    assert outcome.error_line("Traceback\nimgclf: cifar10 needs a file\nERROR: failed to reproduce 'download'\n") == \
        "imgclf: cifar10 needs a file"
    assert outcome.error_line("noise\nERROR: failed to reproduce 'split'\n\n") == "ERROR: failed to reproduce 'split'"
    assert outcome.error_line("") == "no output"
    assert outcome.first_line(ValueError("bad\nmore")) == "bad" and outcome.first_line(KeyError()) == "KeyError"


def test_a_ray_sweep_refuses_what_a_node_elsewhere_could_not_redo(tmp_path):
    """Each thing a node elsewhere needs is checked before anything runs (no cluster is contacted)."""
    project = make_project(tmp_path / "project", ["download", "split", "perceptron"])
    env = project_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")

    def refused(*setup: list[str]) -> str:
        for command in setup:
            run(command, project)
        done = run([sys.executable, "-m", "imgclf", "sweep", "-S", "perceptron.steps=2,3", "--ray", "127.0.0.1:9"],
                   project, env=env, check=False)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        return done.stderr.strip()

    assert "git remote get-url origin" in refused()
    run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], tmp_path)
    assert "is not on origin" in refused(["git", "remote", "add", "origin", str(tmp_path / "origin.git")])
    assert "no default DVC remote" in refused(["git", "push", "-q", "origin", "HEAD:refs/heads/main"])
    assert refused(["dvc", "remote", "add", "-d", "store", str(tmp_path / "dvc-store")]) == \
        "imgclf: sweep --ray: the workspace has uncommitted changes; the nodes clone the git remote at HEAD: " \
        "commit and push them first"
    assert "MLFLOW_TRACKING_URI is sqlite:///" in refused(["git", "commit", "-qam", "remote"],
                                                          ["git", "push", "-q", "origin", "HEAD:refs/heads/main"])
    jobs = run([sys.executable, "-m", "imgclf", "sweep", "-S", "seed=1,2", "--ray", "127.0.0.1:9", "-j", "2"],
               project, env=env, check=False)
    assert jobs.returncode == 2 and "with --ray the cluster's free resources" in jobs.stderr, jobs.stderr


def test_a_ray_request_no_node_can_meet_is_refused():
    from imgclf.sweep import cluster

    nodes = [{"Alive": True, "Resources": {"CPU": 4.0}}, {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 2.0}}]
    cluster._check_resources(cluster.RaySettings("x", num_cpus=4), nodes)  # fits the first node
    with pytest.raises(UserError, match=r"--num-gpus 1: no node of the Ray cluster has that much "
                                        r"\(its nodes: 4 CPU/0 GPU\)"):
        cluster._check_resources(cluster.RaySettings("x", num_cpus=1, num_gpus=1), nodes)  # the GPU node is dead
