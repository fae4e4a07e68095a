"""make remote: the URL in .dvc/config (shared through git), endpoint and secrets only in .dvc/config.local."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from imgclf.errors import UserError
from imgclf.team import remote, s3

from helpers.dvc_project import make_project


def test_remote_from_the_team_server_state_keeps_secrets_out_of_git(tmp_path):
    project = make_project(tmp_path / "project", ["download"])
    state = tmp_path / ".team"
    keys = s3.credentials(state / "s3.credentials")
    (state / "server.json").write_text(json.dumps({"s3_endpoint": "http://127.0.0.1:5003", "bucket": "imgclf",
                                                   "local_s3": True}))
    line = remote.configure(project, state)
    assert "team = s3://imgclf/dvc (default)" in line and keys["secret_access_key"] not in line
    shared = (project / ".dvc" / "config").read_text()
    local = (project / ".dvc" / "config.local").read_text()
    assert "url = s3://imgclf/dvc" in shared and "remote = team" in shared
    assert keys["secret_access_key"] not in shared and keys["access_key_id"] not in shared
    assert "endpointurl = http://127.0.0.1:5003" in local and keys["secret_access_key"] in local
    ignored = subprocess.run(["git", "check-ignore", ".dvc/config.local"], cwd=project, capture_output=True)
    assert ignored.returncode == 0
    listed = subprocess.run([sys.executable, "-m", "dvc", "remote", "list"], cwd=project, capture_output=True,
                            text=True, check=True).stdout
    assert listed.split() == ["team", "s3://imgclf/dvc", "(default)"]


def test_real_s3_endpoint_writes_no_credentials(tmp_path):
    project = make_project(tmp_path / "project", ["download"])
    remote.configure(project, tmp_path / "none", url="s3://team-bucket/imgclf", endpoint="https://s3.example.org")
    local = (project / ".dvc" / "config.local").read_text()
    assert "endpointurl = https://s3.example.org" in local and "secret" not in local
    with pytest.raises(UserError, match="must be s3://"):
        remote.configure(project, tmp_path / "none", url="gs://bucket", endpoint="https://s3.example.org")
    with pytest.raises(UserError, match="no --endpoint given and no team server state"):
        remote.configure(project, tmp_path / "none")
