"""A team on two machines, on one box: a server host and a teammate's host, each a network namespace of its own
joined by a veth pair (addresses only inside them), nothing mocked.

The server host runs `python -m imgclf server` beyond loopback (MLflow's basic-auth app over HTTPS with a
self-signed certificate, PostgreSQL on its own loopback, artifacts on its disk) and Debian's sshd, the DVC
remote's way in. The teammate clones, sets up the remote with their own key, `dvc pull`s into a clean
workspace, runs a stage that logs to the server over HTTPS with a password and `dvc push`es; the server host
sees the run, the model and the DVC objects. A wrong password gets 401 and logs nothing; a restart loses
nothing. Where namespaces cannot be made (no root, no CAP_NET_ADMIN), the tests say so and skip.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.dvc_project import make_project, project_env, run
from helpers.workspace import REPO

pytestmark = pytest.mark.slow
SSHD = "/usr/sbin/sshd"
TINY = yaml.safe_load((REPO / "profiles" / "tiny.yaml").read_text())
STAGES = ["download", "split", "perceptron"]
EXPERIMENT = "two-hosts"
PORT = 5002  # the defaults: each host has its own network stack, so nothing else can hold them
RUNS = f"""
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient()
found = client.get_experiment_by_name({EXPERIMENT!r})
runs = client.search_runs([found.experiment_id], "tags.`dvc.stage` != ''") if found else []
print(json.dumps([[r.info.run_id, r.data.tags["dvc.stage"], r.info.status, r.data.tags.get("imgclf.host", "")]
                  for r in runs]))
"""


def namespaces_missing() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if not shutil.which("ip"):
        return "iproute2's `ip` is not installed"
    probe = f"imgclf-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make network namespaces (needs root with CAP_NET_ADMIN): {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Host:
    """A network namespace: commands run inside it see only its own loopback and its veth address."""

    def __init__(self, name: str, address: str):
        self.name, self.address = name, address

    def argv(self, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, command: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True):
        return run(self.argv(command), cwd, env=env, check=check)

    def popen(self, command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.argv(command), cwd=cwd, env=env or project_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def hosts():
    why = namespaces_missing()
    if why:
        pytest.skip(why)
    if not os.access(SSHD, os.X_OK):
        pytest.skip(f"{SSHD} is not installed (Debian: apt-get install openssh-server)")
    tag, subnet = os.getpid() % 100000, random.randrange(1, 250)
    server, mate = Host(f"imgclf-s{tag}", f"10.231.{subnet}.1"), Host(f"imgclf-m{tag}", f"10.231.{subnet}.2")
    _ip("netns", "add", server.name)
    _ip("netns", "add", mate.name)
    try:
        _ip("link", "add", f"ics{tag}", "type", "veth", "peer", "name", f"icm{tag}")
        for host, link in ((server, f"ics{tag}"), (mate, f"icm{tag}")):
            _ip("link", "set", link, "netns", host.name)
            _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", link)
            _ip("-n", host.name, "link", "set", link, "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
        yield server, mate
    finally:
        subprocess.run(["ip", "netns", "del", server.name], capture_output=True)
        subprocess.run(["ip", "netns", "del", mate.name], capture_output=True)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder the postgres user can enter (pytest's tmp_path sits under a 0700 one)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="imgclf-hosts-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


class TeamHost:
    """The server host's services: the team server (HTTPS, auth) and sshd."""

    def __init__(self, host: Host, root: Path):
        self.host, self.root = host, root
        self.state = root / "server" / ".team"
        self.state.parent.mkdir(parents=True)
        self.cert, self.key = root / "server" / "cert.pem", root / "server" / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
                        str(self.key), "-out", str(self.cert), "-subj", f"/CN={host.address}",
                        "-addext", f"subjectAltName=IP:{host.address}"], check=True, capture_output=True)
        self.uri = f"https://{host.address}:{PORT}"
        self.process: subprocess.Popen | None = None
        self.sshd: subprocess.Popen | None = None

    def start(self) -> None:
        info = self.state / "server.json"
        info.unlink(missing_ok=True)
        self.process = self.host.popen([sys.executable, "-m", "imgclf", "server", "--host", self.host.address,
                                        "--port", str(PORT), "--auth", "--tls-cert", str(self.cert),
                                        "--tls-key", str(self.key), "--state", str(self.state)], self.state.parent)
        deadline = time.monotonic() + 240
        while not info.exists():  # written once /health answered over HTTPS
            assert self.process.poll() is None, self.process.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the team server did not come up"
            time.sleep(0.5)

    def stop(self) -> None:
        self.host.run([sys.executable, "-m", "imgclf", "server-stop", "--state", str(self.state)], self.state.parent)
        if self.process is not None:
            self.process.wait(timeout=60)

    def password(self) -> str:
        return (self.state / "admin.password").read_text().strip()

    def start_sshd(self, authorized: str) -> None:
        folder = self.root / "sshd"
        folder.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")], check=True)
        (folder / "authorized_keys").write_text(authorized)
        config = folder / "sshd_config"
        config.write_text(
            f"Port 22\nListenAddress {self.host.address}\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        self.sshd = self.host.popen([SSHD, "-D", "-e", "-f", str(config)], folder)
        time.sleep(1)
        assert self.sshd.poll() is None, self.sshd.stdout.read()

    def host_key_line(self) -> str:
        return f"{self.host.address} {(self.root / 'sshd' / 'host_key.pub').read_text().split(' ')[0]} " \
               f"{(self.root / 'sshd' / 'host_key.pub').read_text().split(' ')[1]}\n"

    def env(self, password: str | None = None) -> dict[str, str]:
        """A client of the server: its URI over HTTPS, the certificate to trust, the admin's password."""
        return project_env(MLFLOW_TRACKING_URI=self.uri, MLFLOW_TRACKING_SERVER_CERT_PATH=str(self.cert),
                           MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password or self.password())

    def runs(self, on: Host, password: str | None = None) -> list[list[str]]:
        return json.loads(on.run([sys.executable, "-c", RUNS], self.root, env=self.env(password)).stdout)

    def stored(self, folder: str) -> list[str]:
        root = self.state / folder
        return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def team(hosts, place):
    server, _ = hosts
    team = TeamHost(server, place)
    team.start()
    yield team
    team.stop()
    if team.sshd is not None:
        team.sshd.terminate()
        team.sshd.wait(timeout=30)


def test_a_teammate_on_another_host_pulls_trains_logs_over_https_and_pushes(hosts, team, place):
    server, mate = hosts
    # The server host: the pipeline run once, logged over HTTPS; its DVC store the remote; pushed.
    project = make_project(place / "project", STAGES, TINY | {"mlflow.experiment": EXPERIMENT})
    server.run(["dvc", "repro"], project, env=team.env())
    configured = server.run([sys.executable, "-m", "imgclf", "remote", "--state", str(team.state)], project).stdout
    assert f"team = ssh://{server.address}{team.state / 'dvc'} (default)" in configured
    server.run(["dvc", "push"], project)
    origin = place / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], place)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "pipeline results, team remote"], project)
    run(["git", "push", "-q", str(origin), "HEAD:main"], project)
    assert "password" not in run(["git", "show", "HEAD:.dvc/config"], project).stdout

    # The teammate's own key, the server's host key known to them (as after a first `ssh`): nothing shared.
    home = place / "mate-home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    team.start_sshd(key.with_suffix(".pub").read_text())
    (home / ".ssh" / "known_hosts").write_text(team.host_key_line())
    mate_env = team.env() | {"HOME": str(home)}

    clone = place / "clone"
    mate.run(["git", "clone", "-q", "-b", "main", str(origin), str(clone)], place, env=mate_env)
    said = mate.run([sys.executable, "-m", "imgclf", "remote", "--url",
                     f"ssh://root@{server.address}{team.state / 'dvc'}", "--keyfile", str(key)], clone,
                    env=mate_env).stdout
    assert "user root" in said and "password" not in (clone / ".dvc" / "config.local").read_text()
    mate.run(["dvc", "pull"], clone, env=mate_env)
    assert "up to date" in mate.run(["dvc", "status"], clone, env=mate_env).stdout

    before = team.runs(mate)
    objects_before = team.stored("dvc")
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["perceptron"]["learning_rate"] = params["perceptron"]["learning_rate"] * 2
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = mate.run(["dvc", "repro"], clone, env=mate_env).stdout
    assert "Running stage 'perceptron'" in output and "Running stage 'split'" not in output
    mate.run(["dvc", "push"], clone, env=mate_env)

    # The server host sees the run (over HTTPS), the model on its disk, the teammate's DVC objects in its store.
    after = team.runs(server)
    new = [entry for entry in after if entry not in before]
    assert [(stage, status) for _, stage, status, _ in new] == [("perceptron", "FINISHED")]
    assert any(f"/{new[0][0]}/" in path or path.endswith("model.keras") for path in team.stored("artifacts"))
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    model_md5 = next(out["md5"] for out in lock["stages"]["perceptron"]["outs"] if out["path"] == "models/perceptron")
    stored = team.stored("dvc")
    assert len(stored) > len(objects_before)
    assert f"files/md5/{model_md5[:2]}/{model_md5[2:]}" in stored, model_md5
    assert "in sync" in mate.run(["dvc", "status", "--cloud"], clone, env=mate_env).stdout


def test_a_wrong_password_gets_401_and_logs_nothing(hosts, team, place):
    server, mate = hosts
    before = team.runs(server)
    probe = (f"import ssl, base64, urllib.request, urllib.error\n"
             f"context = ssl.create_default_context(cafile={str(team.cert)!r})\n"
             f"request = urllib.request.Request('{team.uri}/api/2.0/mlflow/experiments/search?max_results=1')\n"
             f"request.add_header('Authorization', 'Basic ' + base64.b64encode(b'admin:wrong').decode())\n"
             f"try:\n    urllib.request.urlopen(request, context=context)\n    print(200)\n"
             f"except urllib.error.HTTPError as error:\n    print(error.code)\n")
    assert mate.run([sys.executable, "-c", probe], place).stdout.strip() == "401"
    workspace = place / "wrong"
    shutil.copytree(place / "clone", workspace, ignore=shutil.ignore_patterns(".dvc"))
    stage = mate.run([sys.executable, "-m", "stages.perceptron"], workspace, env=team.env("wrong"), check=False)
    assert stage.returncode == 2, stage.stdout + stage.stderr
    assert stage.stderr.strip().splitlines()[-1] == (
        f"imgclf: the MLflow tracking server at {team.uri} refused the credentials (HTTP 401): check "
        f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; nothing was logged")
    assert team.runs(server) == before


def test_a_restart_loses_no_run_artifact_or_dvc_object(hosts, team):
    server, _ = hosts
    runs, artifacts, objects = team.runs(server), team.stored("artifacts"), team.stored("dvc")
    assert runs and artifacts and objects
    team.stop()
    team.start()
    assert team.runs(server) == runs
    assert team.stored("artifacts") == artifacts and team.stored("dvc") == objects


def test_beyond_loopback_without_auth_and_tls_is_refused_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "imgclf", "server", "--host", "10.231.0.1", "--state",
                           str(tmp_path / ".team")], capture_output=True, text=True, env=project_env())
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "imgclf: server: --host 10.231.0.1 listens beyond this machine: add --auth (AUTH=1) and --tls-cert/--tls-key "
        "(TLS_CERT=, TLS_KEY=), so that only teammates with a password reach the runs and no password crosses the "
        "network in clear text")
