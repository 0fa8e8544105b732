"""binder/: what repo2docker (Binder, a course's JupyterHub image) reads; postBuild does what it says.

postBuild runs here in a clean virtual environment, as repo2docker runs it after installing
binder/requirements.txt: it must leave the op built and the cached networks trained in the image's
prefix (not in $HOME), where binder/start points cnnlab when a server starts.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BINDER = ROOT / "binder"


def test_binder_holds_repo2docker_files_that_point_at_the_pins():
    assert (BINDER / "requirements.txt").read_text().splitlines()[-1] == "-r ../requirements.txt"
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    assert {"g++", "make"} <= set((BINDER / "apt.txt").read_text().split())
    for script in ("postBuild", "start"):
        assert os.access(BINDER / script, os.X_OK), script


@pytest.mark.slow
def test_postbuild_builds_the_op_and_trains_the_networks_in_a_clean_environment(tmp_path):
    prefix = tmp_path / "image-env"
    subprocess.run([sys.executable, "-m", "venv", str(prefix)], check=True)
    python = prefix / "bin" / "python"
    # --no-compile: byte-compiling TensorFlow's sources is repo2docker's business, not postBuild's.
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-compile", "-r", str(BINDER / "requirements.txt")],
                   check=True, timeout=1200)  # fmt: skip
    # As on Binder: the image's own tools and the system's (g++), no CUDA toolkit. This machine's
    # /usr/local/cuda is hidden under an empty tmpfs, so the op is built as a Binder image builds it.
    toolkit = os.path.realpath("/usr/local/cuda")  # a link to /usr/local/cuda-13.0 here
    hide = ["--tmpfs", toolkit] if os.path.isdir(toolkit) else []
    without_cuda = [shutil.which("bwrap"), "--dev-bind", "/", "/", *hide, "--"]
    env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "NB_PYTHON_PREFIX": str(prefix), "CNNLAB_OFFLINE": "1", "LANG": "C.UTF-8"}  # fmt: skip
    (tmp_path / "home").mkdir()
    done = subprocess.run([*without_cuda, "bash", str(BINDER / "postBuild")], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cache = prefix / "share" / "cnnlab"
    assert list((cache / "ops").glob("lab_conv_*.so")), "postBuild did not build the op"
    assert sorted(p.name for p in (cache / "models").glob("*.keras")), "postBuild did not train the networks"
    assert "Everything cnnlab needs is here." in done.stdout
    assert "CPU kernels only (nvcc not found)" in done.stdout, done.stdout[-3000:]
    check = ("from cnnlab import models, ops; ops.load_library(); "
             "print(models.model_cache_dir(), models.mnist_convnet_path().is_file())")  # fmt: skip
    started = subprocess.run([*without_cuda, str(BINDER / "start"), str(python), "-c", check], env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    assert started.stdout.split() == [str(cache / "models"), "True"], started.stdout  # found, not rebuilt
    assert not (tmp_path / "home" / ".cache" / "cnnlab").exists()  # nothing in $HOME, which a hub may replace
