"""The team server's restart with a store holding N logged runs: start-up time and memory.

`python -m imgclf server` on free ports in a temp state folder; N runs are logged to it, each with a 1 MiB
artifact (uploaded through the server, as a stage's model is); then the server is stopped and started
again. Measured: seconds from the start command to /health answering, and the resident memory of
everything the server runs (its supervisor and children, PostgreSQL's processes) once up. `--source`
runs another checkout's server (PYTHONPATH=<source>/src) to compare versions on the same machine.

    python benchmarks/team_restart.py [--runs 100] [--source PATH] [--name team_restart]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, source: Path, state: Path):
        self.source, self.state = source, state
        self.port, self.pg_port = free_port(), free_port()
        self.old = (source / "src" / "imgclf" / "team" / "s3.py").exists()  # the moto-backed version
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=f"{self.source / 'src'}{os.pathsep}{self.source}")

    def start(self) -> float:
        command = [sys.executable, "-m", "imgclf", "server", "--state", str(self.state), "--port", str(self.port),
                   "--pg-port", str(self.pg_port)]
        if self.old:
            command += ["--s3-port", str(free_port())]
        started = time.perf_counter()
        self.process = subprocess.Popen(command, env=self.env(), cwd=self.state.parent, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited (code {self.process.returncode}): see {self.state / 'run'}")
            try:
                with urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.1)

    def rss_mib(self) -> float:
        """Resident memory of the supervisor, its descendants and the PostgreSQL cluster of this state."""
        processes = {}
        supervisor = psutil.Process(self.process.pid)
        for process in [supervisor, *supervisor.children(recursive=True)]:
            processes[process.pid] = process
        for process in psutil.process_iter(["cmdline"]):
            if str(self.state) in " ".join(process.info["cmdline"] or []):
                processes[process.pid] = process
                for child in process.children(recursive=True):
                    processes[child.pid] = child
        total = 0
        for process in processes.values():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def stop(self) -> None:
        subprocess.run([sys.executable, "-m", "imgclf", "server-stop", "--state", str(self.state)], env=self.env(),
                       cwd=self.state.parent, capture_output=True)
        if self.process is not None:
            self.process.wait(timeout=120)


def log_runs(uri: str, runs: int, folder: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment("restart")
    artifact = folder / "model.bin"
    artifact.write_bytes(os.urandom(2**20))
    for index in range(runs):
        run = client.create_run(experiment, run_name=f"run-{index}")
        client.log_metric(run.info.run_id, "accuracy", index / runs)
        client.log_artifact(run.info.run_id, str(artifact))
        client.set_terminated(run.info.run_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--source", type=Path, default=common.ROOT, help="the checkout whose server runs")
    parser.add_argument("--name", default="team_restart", help="the results file's name")
    args = parser.parse_args()
    load = common.load_now()
    root = Path(tempfile.mkdtemp(prefix="imgclf-restart-"))
    root.chmod(0o755)  # PostgreSQL's own user must reach the state folder
    server = Server(args.source.resolve(), root / ".team")
    try:
        first = server.start()
        empty_rss = server.rss_mib()
        print(f"first start {first:.1f} s, {empty_rss:.0f} MiB; logging {args.runs} runs ...", flush=True)
        log_runs(f"http://127.0.0.1:{server.port}", args.runs, root)
        server.stop()
        restart = server.start()
        full_rss = server.rss_mib()
        server.stop()
        state_mib = sum(path.stat().st_size for path in server.state.rglob("*") if path.is_file()) / 2**20
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    figures = {"runs": args.runs, "artifact_mib_per_run": 1, "moto_store": server.old,
               "first_start_s": round(first, 1), "first_rss_mib": round(empty_rss), "restart_s": round(restart, 1),
               "restart_rss_mib": round(full_rss), "state_mib": round(state_mib)}
    print(f"restart with {args.runs} runs: {restart:.1f} s, {full_rss:.0f} MiB (state {state_mib:.0f} MiB)")
    path = common.write_result(args.name, figures, load)
    print(f"written to {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
