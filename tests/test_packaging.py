"""What a course installs: the cnnlab package and its kernel sources, without the test and benchmark rigs."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_the_op_sources_and_no_rig(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, tree / name)
    for package in ("cnnlab", "kernel_rigs"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.so.json"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist")], cwd=tree, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("cnnlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    kernels = {Path(n).name for n in names if n.startswith("cnnlab/ops/kernels/")}
    assert {"lab_conv_ops.cc", "lab_conv_cpu.cc", "lab_conv_gpu.cc", "lab_conv_kernels.cu", "lab_conv_launchers.h",
            "conv_geometry.h", "lab_conv_direct.h", "lab_conv_winograd.h", "lab_conv_op_kernels.h"} <= kernels  # fmt: skip
    rigs = [n for n in names if "kernel_rigs" in n or "cuda_on_cpu" in n or "standalone" in n or "resources.py" in n]
    assert rigs == []
