"""make remote: the URL in .dvc/config (shared through git), what is the teammate's own only in .dvc/config.local."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from imgclf.errors import UserError
from imgclf.team import remote

from helpers.dvc_project import make_project


def dvc_config(project, key: str) -> str:
    return subprocess.run([sys.executable, "-m", "dvc", "config", key], cwd=project, capture_output=True,
                          text=True, check=True).stdout.strip()


def remotes(project) -> list[str]:
    """The team remote as DVC reads it (not `dvc remote list`, whose lines wrap at the terminal's width)."""
    default = dvc_config(project, "core.remote")
    return ["team", dvc_config(project, "remote.team.url"), "(default)" if default == "team" else default]


def test_on_the_server_host_the_remote_is_the_servers_dvc_store(tmp_path):
    project = make_project(tmp_path / "project", ["download"])
    state = tmp_path / ".team"
    state.mkdir()
    (state / "server.json").write_text(json.dumps({"dvc_remote": str(state / "dvc")}))
    line = remote.configure(project, state)
    assert f"team = {state / 'dvc'} (default)" in line
    assert remotes(project) == ["team", str(state / "dvc"), "(default)"]
    local = project / ".dvc" / "config.local"
    assert not local.exists() or "team" not in local.read_text()


def test_a_teammates_ssh_remote_keeps_user_port_and_key_out_of_git(tmp_path):
    project = make_project(tmp_path / "project", ["download"])
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key\n")
    line = remote.configure(project, tmp_path / "none", url="ssh://alice@10.0.0.1:2222/srv/imgclf/.team/dvc",
                            keyfile=str(key))
    shared = (project / ".dvc" / "config").read_text()
    local = (project / ".dvc" / "config.local").read_text()
    assert "url = ssh://10.0.0.1/srv/imgclf/.team/dvc" in shared and "remote = team" in shared
    assert "alice" not in shared and "2222" not in shared and str(key) not in shared
    assert "user = alice" in local and "port = 2222" in local and f"keyfile = {key}" in local
    assert "user alice, port 2222" in line and "your SSH key or agent" in line
    ignored = subprocess.run(["git", "check-ignore", ".dvc/config.local"], cwd=project, capture_output=True)
    assert ignored.returncode == 0


def test_a_bucket_remote_writes_no_credentials(tmp_path):
    project = make_project(tmp_path / "project", ["download"])
    remote.configure(project, tmp_path / "none", url="s3://team-bucket/imgclf", endpoint="https://s3.example.org")
    local = (project / ".dvc" / "config.local").read_text()
    assert "endpointurl = https://s3.example.org" in local and "secret" not in local and "key" not in local
    assert remotes(project) == ["team", "s3://team-bucket/imgclf", "(default)"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "no --url (URL=) and no team server state"),
    ({"url": "ftp://host/path"}, "must be ssh://"),
    ({"url": "gs://bucket/path"}, "gs:// needs DVC's dvc-gs plugin: pip install dvc-gs"),
    ({"url": "s3://bucket/path", "keyfile": "key"}, "--keyfile (KEYFILE=) is for an ssh:// remote"),
    ({"url": "ssh://host/path", "endpoint": "https://x"}, "--endpoint is for an s3:// remote"),
])
def test_a_remote_that_cannot_work_is_one_line(tmp_path, kwargs, message):
    project = make_project(tmp_path / "project", ["download"])
    with pytest.raises(UserError, match=re.escape(message)):
        remote.configure(project, tmp_path / "none", **kwargs)


def test_on_a_server_beyond_loopback_the_shared_url_is_ssh_and_this_host_uses_the_folder(tmp_path):
    project = make_project(tmp_path / "project", ["download"])
    state = tmp_path / ".team"
    state.mkdir()
    (state / "server.json").write_text(json.dumps({"dvc_remote": f"ssh://10.0.0.1{state / 'dvc'}",
                                                   "dvc_store": str(state / "dvc")}))
    line = remote.configure(project, state)
    assert f"team = ssh://10.0.0.1{state / 'dvc'} (default)" in line
    assert f"url = ssh://10.0.0.1{state / 'dvc'}" in (project / ".dvc" / "config").read_text()
    assert f"url = {state / 'dvc'}" in (project / ".dvc" / "config.local").read_text()
