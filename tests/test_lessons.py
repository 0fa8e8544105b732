"""The stored lessons as a student opens them: structure, figures readable on a laptop, clean outputs, size."""

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

LESSONS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MIN_DPI = 110
MAX_BYTES = 2_000_000


def cells(path):
    return json.loads(path.read_text())["cells"]


def text(cell):
    return "".join(cell["source"])


def test_all_six_lessons_are_here():
    assert [path.name[:2] for path in LESSONS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_opens_with_goals_and_ends_with_takeaways_questions_and_its_exercise(path):
    markdown = [text(c) for c in cells(path) if c["cell_type"] == "markdown"]
    assert markdown[0].startswith("# ") and "**You will learn**" in markdown[0]
    exercise = markdown[-1]  # the lesson's last word sends the student to its exercise
    assert exercise.startswith("## Your exercise") and f"](../exercises/{path.name})" in exercise
    assert (path.parents[1] / "exercises" / path.name).is_file()
    ending = markdown[-2]
    assert "## Takeaways" in ending and "**Check yourself**" in ending
    asked, _, answered = ending.split("**Check yourself**")[1].partition("<details>")
    questions = re.findall(r"^\d+\. ", asked, re.M)
    assert 3 <= len(questions) <= 4, f"{path.name}: {len(questions)} check-yourself questions"
    assert "<summary>Answers</summary>" in answered and "</details>" in answered, f"{path.name}: no collapsed answers"
    answers = re.findall(r"^\d+\. ", answered, re.M)
    assert len(answers) == len(questions), f"{path.name}: {len(questions)} questions, {len(answers)} answers"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_every_stored_figure_is_at_least_110_dpi(path):
    figures = 0
    for cell in cells(path):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                figures += 1
                dpi = Image.open(io.BytesIO(base64.b64decode(png))).info.get("dpi", (0, 0))
                assert min(dpi) >= MIN_DPI - 0.5, f"{path.name}: a figure at {dpi} dpi"
    assert figures > 0


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_outputs_hold_no_errors_warnings_or_stderr_and_the_file_is_small(path):
    assert path.stat().st_size < MAX_BYTES
    for cell in cells(path):
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"{path.name}: {output.get('ename')}"
            assert output.get("name") != "stderr", f"{path.name}: {''.join(output.get('text', ''))[:200]}"
            assert "Warning" not in "".join(output.get("text", "")), f"{path.name}: a warning in the output"
