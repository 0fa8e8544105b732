"""benchmarks/gpu_check.py as far as a machine without a GPU allows: no TensorFlow, one line without a GPU, one file."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _without_tensorflow(tmp_path):
    """An environment in which importing tensorflow fails, as on the GPU machine."""
    site = tmp_path / "no-tensorflow"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['tensorflow'] = None  # import tensorflow raises\n")
    return {"PYTHONPATH": f"{site}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}


def test_without_a_gpu_it_stops_with_one_clear_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], env=_without_tensorflow(tmp_path),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines() == [done.stdout.strip()] and done.stdout.startswith("gpu-check: nothing to check here (")
    assert done.stderr == "" and not (tmp_path / "out").exists()


def test_what_the_gpu_steps_import_works_without_tensorflow(tmp_path):
    code = ("from kernel_rigs.standalone import CudaKernels, geometry, build_standalone\n"
            "from cnnlab.ops.build import _find_nvcc\n"
            "import conv_reference\n"
            "print(geometry((1, 5, 5, 2), (3, 3, 2, 4), (1, 1), 'SAME'))")  # fmt: skip
    env = _without_tensorflow(tmp_path)
    env["PYTHONPATH"] += f":{ROOT / 'tests'}"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    collected = subprocess.run([sys.executable, "-m", "pytest", "tests/gpu", "-m", "gpu", "--collect-only", "-q"],
                               env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert collected.returncode == 0 and "test_cuda_kernels.py" in collected.stdout, collected.stdout[-2000:]


def test_every_step_lands_in_one_results_file_within_the_budget(tmp_path, monkeypatch):
    check = _load()
    assert sum(limit for _, limit in check.STEPS) <= check.BUDGET_S == 8 * 60
    monkeypatch.setattr(check, "gpu_absent", lambda: None)
    fake = {title: [sys.executable, "-c", f"print('ran {title}')"] for title, _ in check.STEPS}
    fake["tests/gpu"] = [sys.executable, "-c", "import sys; print('1 failed'); sys.exit(1)"]
    monkeypatch.setattr(check, "commands", lambda out: fake)
    assert check.main(["--out", str(tmp_path)]) == 1  # one step failed
    text = (tmp_path / "gpu-check.txt").read_text()
    for title, _ in check.STEPS:
        assert f"===== {title} =====" in text and (f"ran {title}" in text or "1 failed" in text)
    assert "tests/gpu: FAILED (exit 1)" in text and "tests/gpu                    NOT passed" in text
