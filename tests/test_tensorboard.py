"""`make tensorboard`: TensorBoard on 127.0.0.1 over the project's logs/, answering over real HTTP."""

from __future__ import annotations

import json
import shutil
from urllib.request import urlopen

import pytest

from helpers.servers import free_port, start, stop, wait_until_up
from helpers.workspace import REPO


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_tensorboard_serves_the_logs_folder_on_loopback():
    port = free_port()
    server = start(["make", "-s", "-C", str(REPO), "tensorboard", f"TB_PORT={port}"])
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, path="/data/logdir", timeout_s=120)
        with urlopen(f"http://127.0.0.1:{port}/data/logdir", timeout=10) as answer:
            assert json.load(answer)["logdir"] == str(REPO / "logs")
    finally:
        stop(server)
