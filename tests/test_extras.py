"""The team and cluster parts are optional extras: without one, the command that needs it says which, in one line."""

from __future__ import annotations

import importlib.util

import pytest

from imgclf.errors import UserError, require_extra
from imgclf.team import server


def without(monkeypatch, *modules: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name in modules else real(name, *args))


def test_server_without_the_team_extra_names_it(monkeypatch, tmp_path):
    without(monkeypatch, "psycopg")
    with pytest.raises(UserError, match=r"^server \(PostgreSQL\) needs the team extra \(psycopg is not installed\): "
                                        r"pip install 'imgclf\[team\]'"):
        server.check(server.Settings(state=tmp_path))


def test_auth_without_flask_wtf_names_the_team_extra(monkeypatch, tmp_path):
    without(monkeypatch, "flask_wtf")
    with pytest.raises(UserError, match=r"needs the team extra \(flask_wtf"):
        server.check(server.Settings(state=tmp_path, auth=True))


def test_sweep_on_ray_without_the_cluster_extra_names_it(monkeypatch):
    without(monkeypatch, "ray")
    with pytest.raises(UserError, match=r"^sweep --ray needs the cluster extra \(ray is not installed\)"):
        require_extra("ray", "cluster", "sweep --ray")


def test_search_without_the_search_extra_names_it(monkeypatch, workspace):
    from imgclf.sweep import search

    without(monkeypatch, "optuna")
    with pytest.raises(UserError, match=r"^search needs the search extra \(optuna is not installed\): "
                                        r"pip install 'imgclf\[search\]'"):
        search.search(search.Settings(overrides=("cnn.dropout=uniform(0,0.5)",), objective="baseline.accuracy"))


def test_the_base_install_does_not_name_the_extras_as_requirements():
    import tomllib

    from helpers.workspace import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    for name in ("psycopg", "boto3", "moto", "Flask-WTF", "ray", "dvc-ssh", "dvc-s3", "optuna"):
        assert name not in base, name
    extras = project["optional-dependencies"]
    assert any("dvc-ssh" in item for item in extras["team"]) and any("ray" in item for item in extras["cluster"])
    assert any("moto" in item for item in extras["dev"]) and any("optuna" in item for item in extras["search"])
