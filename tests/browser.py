"""A real Jupyter server and Debian's headless chromium, driven by Playwright, for the browser tests.

Playwright's own browser download is unreachable from these machines, so the
tests launch the system ``chromium`` (``make test`` installs it). Each server
listens on the loopback address only, on a free port, with a random token, and
is stopped when its block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:PORT/
    token: str
    root: Path
    log: Path

    def page_url(self, path: str) -> str:
        joiner = "&" if "?" in path else "?"
        return f"{self.url}{path.lstrip('/')}{joiner}token={self.token}"


def chromium() -> str:
    """The path of Debian's chromium; the test fails (not skips) without it: make test installs it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter(root: Path, app: str = "server", extensions: dict[str, bool] | None = None, timeout: float = 60,
            env: dict[str, str] | None = None, args: tuple[str, ...] = ()):  # fmt: skip
    """A ``jupyter server`` (or ``lab``) on ``root``, with extra ``env`` and command-line ``args``; yields a :class:`Server`."""
    port, token = _free_port(), secrets.token_hex(16)
    config = root.parent / f"jupyter-config-{port}"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": extensions or {}}}))  # fmt: skip
    log = root.parent / f"jupyter-{port}.log"
    command = [str(Path(sys.executable).parent / "jupyter"), app, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0", *args]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, **(env or {}), "JUPYTER_CONFIG_DIR": str(config),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}/", token, root, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(server.page_url("api/status"), timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter {app} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _collect_errors(page) -> None:
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))


@contextlib.contextmanager
def browser_page():
    """A Playwright page in headless chromium at a laptop's viewport; console errors collected in ``page.errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.on("page", _collect_errors)
            page = context.new_page()
            yield page
        finally:
            browser.close()
