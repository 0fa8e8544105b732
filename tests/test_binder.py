"""binder/: what repo2docker (Binder, a course's JupyterHub image) reads; postBuild does what it says.

postBuild runs here in a new virtual environment, as repo2docker runs it after installing
binder/requirements.txt: it must leave the op built and the cached networks trained in the image's
prefix (not in $HOME), where binder/start points cnnlab when a server starts.

binder/requirements.txt is ``-r ../requirements.txt`` (checked below), the pins `make setup` has
already installed into this interpreter; the new environment reads those installed packages
through a ``.pth`` file instead of unpacking TensorFlow again (two minutes of the test, and
nothing postBuild does). cnnlab itself, the op and the networks are postBuild's, from nothing.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
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
def test_postbuild_builds_the_op_and_trains_the_networks_in_a_new_prefix(tmp_path):
    prefix = tmp_path / "image-env"
    # No pip or setuptools of its own: as after repo2docker installed binder/requirements.txt, the
    # pinned ones (setuptools included, which builds cnnlab without build isolation) are found below.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    python = prefix / "bin" / "python"
    (site_packages,) = prefix.glob("lib/python*/site-packages")
    pins = sysconfig.get_path("purelib")  # this interpreter's site-packages, where make setup installed them
    # A path line, not an import: the .pth files of that folder (cnnlab's editable install) stay unread.
    (site_packages / "installed_pins.pth").write_text(pins + "\n")
    # As on Binder: the image's own tools and the system's (g++), no CUDA toolkit. This machine's
    # /usr/local/cuda and NVIDIA's nvcc wheels (requirements-cuda.txt, which binder/ does not install)
    # are hidden under empty tmpfs mounts, so the op is built as a Binder image builds it.
    toolkits = [os.path.realpath("/usr/local/cuda"), os.path.join(pins, "nvidia")]  # /usr/local/cuda links to cuda-13.0
    hide = [arg for toolkit in toolkits if os.path.isdir(toolkit) for arg in ("--tmpfs", toolkit)]
    # --unshare-net: no network at all, so nothing postBuild does may download (pip included).
    without_cuda = [shutil.which("bwrap"), "--dev-bind", "/", "/", "--unshare-net", *hide, "--"]
    env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "NB_PYTHON_PREFIX": str(prefix), "CNNLAB_OFFLINE": "1", "LANG": "C.UTF-8"}  # fmt: skip
    (tmp_path / "home").mkdir()
    done = subprocess.run([*without_cuda, "bash", str(BINDER / "postBuild")], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (prefix / "bin" / "cnnlab").is_file(), "postBuild did not install cnnlab into the image's prefix"
    cache = prefix / "share" / "cnnlab"
    assert list((cache / "ops").glob("lab_conv_*.so")), "postBuild did not build the op"
    assert sorted(p.name for p in (cache / "models").glob("*.keras")), "postBuild did not train the networks"
    assert "The lessons and assignments run here." in done.stdout and "Optional, not here: nvcc" in done.stdout
    assert "CPU kernels only (nvcc not found)" in done.stdout, done.stdout[-3000:]
    check = ("from cnnlab import models, ops; ops.load_library(); "
             "print(models.model_cache_dir(), models.mnist_convnet_path().is_file())")  # fmt: skip
    started = subprocess.run([*without_cuda, str(BINDER / "start"), str(python), "-c", check], env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    assert started.stdout.split() == [str(cache / "models"), "True"], started.stdout  # found, not rebuilt
    assert not (tmp_path / "home" / ".cache" / "cnnlab").exists()  # nothing in $HOME, which a hub may replace
