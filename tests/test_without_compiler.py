"""A machine that cannot build the op (no C++ compiler, nothing cached): the lessons still run top to bottom.

The two cells that need the op print one line saying what is missing and how to get it; no assignment uses it.
Lesson 03 runs here; lesson 02 runs in JupyterLab, in a browser, on such a machine (test_lab_browser.py).
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parents[1]
MISSING = "no C++ compiler found"


def no_compiler_env(folder: Path) -> dict[str, str]:
    """The environment of a machine without a C++ compiler and no op built earlier (scratch paths in ``folder``)."""
    return {"CXX": str(folder / "no-such-compiler"), "CNNLAB_OPS_CACHE": str(folder / "empty-op-cache"),
            "CNNLAB_OFFLINE": "1"}  # fmt: skip


@pytest.fixture
def no_compiler(tmp_path, monkeypatch):
    for name, value in no_compiler_env(tmp_path).items():
        monkeypatch.setenv(name, value)


@pytest.mark.slow
@pytest.mark.parametrize("lesson, skipped", [("03_mnist_cnn", "skipping the LabConv2D twin: ")])
def test_a_lesson_runs_top_to_bottom_without_a_compiler(no_compiler, lesson, skipped):
    nb = nbformat.read(ROOT / "notebooks" / f"{lesson}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert [o for o in outputs if o.output_type == "error"] == []
    assert [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"] == []
    printed = [line for o in outputs if o.output_type == "stream" for line in o.text.splitlines()]
    notices = [line for line in printed if MISSING in line]
    assert len(notices) == 1 and notices[0].startswith(skipped) and "apt-get install g++" in notices[0]
    assert sum("image/png" in o.get("data", {}) for o in outputs) > 0  # everything else ran: figures too


def test_no_assignment_uses_the_op():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        text = "".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert not any(name in text for name in ("cnnlab.ops", "LabConv2D", "cnnlab.layers", "import ops")), path


def test_doctor_says_what_is_missing_without_calling_it_broken(no_compiler, capsys):
    from cnnlab import doctor

    assert doctor.main() == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line[9:].startswith("custom op"))
    assert lines[at].startswith("[absent]") and "lesson 03 its LabConv2D twin" in lines[at] and "BROKEN" not in out
    assert lines[at + 1].lstrip().startswith("->") and MISSING in lines[at + 1]  # what to do, on a line of its own
    assert "[ok    ] g++" not in out and "[absent] g++" in out
    assert max(len(line) for line in lines) <= 200, max(lines, key=len)
    assert "The lessons and assignments run here." in out and "Everything cnnlab needs" not in out
