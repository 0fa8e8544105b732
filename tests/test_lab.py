"""`make lab` serves JupyterLab: start the same server the Makefile starts and fetch /lab."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_jupyterlab_answers_200_on_lab(tmp_path):
    port = _free_port()
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--notebook-dir={tmp_path}", "--ServerApp.token=cnnlab-test"]  # fmt: skip
    if os.geteuid() == 0:
        argv.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/lab?token=cnnlab-test", timeout=5
                ) as page:
                    status, body = page.status, page.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        assert server.poll() is None, server.stderr.read()
        assert status == 200
        assert "<title>JupyterLab</title>" in body
    finally:
        server.terminate()
        server.wait(timeout=30)
