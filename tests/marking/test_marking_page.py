"""The marking page in a real browser: Debian's chromium, driven by Playwright, against a real Jupyter server.

Screenshots land in the test's temporary folder (printed on failure) at a laptop's viewport.
"""

import csv
import json
import re
from pathlib import Path

import pytest

from cnnlab.grading.pipeline.score import CellResult
from cnnlab.grading.results.marks import publish
from cnnlab.grading.results.sheet import Sheet, SubmissionResult
from cnnlab.marking.sheet import marking_sheet
from tests.browser import browser_page, jupyter

SOURCE = Path(__file__).parents[1] / "fixtures" / "source"
ANSWERS = {"ann": "Because the kernel has to fit inside the signal.", "bob": "It loses f - 1 samples.",
           "cy": ""}  # fmt: skip
PRINTED = {"ann": "test digits 400 to 599: 193 of 200 flipped\n<b>median 0.150</b>"}  # HTML from a kernel stays text
pytestmark = pytest.mark.slow


def _grades(root: Path) -> Path:
    out = root / "grades"
    results = [SubmissionResult(s, "conv_basics", f"submitted/{s}/conv_basics/conv_basics.ipynb", "graded",
                                (CellResult("test_conv1d", 3.0, 3.0, True), CellResult("test_output_length", 2.0, 2.0, True),
                                 CellResult("why_shorter", 0.0, 1.0, None, "written answer: graded by a person")),
                                manual_answers=(("why_shorter", "Why is the output shorter than the input?\n\n" + a),),
                                printed=(("why_shorter", PRINTED[s]),) if s in PRINTED else ())
               for s, a in ANSWERS.items()]  # fmt: skip
    publish(out, Sheet(1, "bwrap", results, source=str(SOURCE)))
    return out


def _rows(out: Path) -> dict:
    return {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}


def test_the_sheet_the_page_shows(tmp_path):
    sheet = marking_sheet(_grades(tmp_path))
    (task,) = sheet["tasks"]
    assert (task["grade_id"], task["max"]) == ("why_shorter", 1.0)
    assert task["question"] == "Why is the output shorter than the input?" and task["model_answer"] == "The kernel must fit."
    assert task["rubric"] == "**Rubric**\n- (1 pt) Says the kernel must fit inside the signal."
    assert [s["answers"]["why_shorter"] for s in sheet["students"]] == list(ANSWERS.values())  # question stripped
    assert [s["printed"] for s in sheet["students"]] == [{"why_shorter": PRINTED["ann"]}, {}, {}]


def test_marking_with_the_keyboard_in_a_browser(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    out = _grades(root)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with jupyter(root, extensions={"cnnlab.marking": True}) as server, browser_page() as page:
        url = server.page_url("cnnlab/marking?folder=grades")
        page.goto(url)
        page.wait_for_function("document.getElementById('who').textContent === 'ann'")
        assert "Why is the output shorter" in page.inner_text("#question")
        assert page.inner_text("#model") == "The kernel must fit."
        assert "(1 pt) Says the kernel must fit inside the signal." in page.inner_text("#rubric")
        assert page.inner_text("#answer") == ANSWERS["ann"]
        assert page.is_visible("#printed") and page.inner_text("#printed") == PRINTED["ann"]
        assert page.locator("#printed b").count() == 0
        page.keyboard.type("1")
        page.keyboard.press("Tab")
        page.keyboard.type("Clear and right.")
        page.wait_for_function("document.getElementById('status').textContent === 'saved'")
        assert "1 marked" in page.inner_text("#progress")
        page.screenshot(path=shots / "1-ann-marked.png", full_page=True)

        page.keyboard.press("Alt+ArrowDown")
        page.wait_for_function("document.getElementById('who').textContent === 'bob'")
        assert not page.is_visible("#printed")  # bob's notebook printed nothing above his answer
        page.keyboard.type("0.5")
        page.wait_for_function("document.getElementById('status').textContent === 'saved'")
        page.keyboard.press("Alt+ArrowDown")
        page.wait_for_function("document.getElementById('who').textContent === 'cy'")
        assert page.inner_text("#answer") == "(no answer written)"
        page.keyboard.type("3")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('points must be from 0 to 1')")
        page.screenshot(path=shots / "2-out-of-range.png", full_page=True)
        assert "cy" not in json.loads((out / "marks.json").read_text())["marks"]["conv_basics"]

        page.reload()  # nothing is lost
        page.wait_for_function("document.getElementById('who').textContent === 'ann'")
        assert page.input_value("#points") == "1" and page.input_value("#comment") == "Clear and right."
        page.keyboard.press("Alt+ArrowDown")
        page.wait_for_function("document.getElementById('who').textContent === 'bob'")
        assert page.input_value("#points") == "0.5"
        assert "2 marked" in page.inner_text("#progress")
        page.screenshot(path=shots / "3-after-reload.png", full_page=True)

        other = page.context.new_page()  # a second tab saving another answer at the same time
        other.goto(url)
        other.wait_for_function("document.getElementById('who').textContent === 'ann'")
        other.keyboard.press("Alt+ArrowDown")
        other.keyboard.press("Alt+ArrowDown")
        other.wait_for_function("document.getElementById('who').textContent === 'cy'")
        page.fill("#comment", "Half: say why f - 1.")
        other.keyboard.type("0")
        page.wait_for_function("document.getElementById('status').textContent === 'saved'")
        other.wait_for_function("document.getElementById('status').textContent === 'saved'")

        sheet = page.request.get(server.page_url("cnnlab/marking/api/marks.csv?folder=grades")).text()
        assert page.errors == [] and other.errors == []
    rows = _rows(out)
    assert [(rows[s]["why_shorter"], rows[s]["total"], rows[s]["manual_pending"]) for s in ANSWERS] == [
        ("1", "6", "0"), ("0.5", "5.5", "0"), ("0", "5", "0")]
    lines = list(csv.DictReader(sheet.splitlines()))
    assert [(r["student"], r["points"], r["comment"]) for r in lines] == [
        ("ann", "1", "Clear and right."), ("bob", "0.5", "Half: say why f - 1."), ("cy", "0", "")]
    feedback = (out / "feedback" / "ann" / "conv_basics" / "conv_basics.html").read_text()
    assert "Clear and right." in feedback and "6 / 6" in feedback
    assert sorted(p.name for p in shots.iterdir()) == ["1-ann-marked.png", "2-out-of-range.png", "3-after-reload.png"]
    print(f"screenshots: {shots}")


def test_the_page_refuses_a_folder_outside_the_server_root_and_bad_marks(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    _grades(tmp_path)  # beside the root, not inside it
    inside = _grades(root)
    with jupyter(root, extensions={"cnnlab.marking": True}) as server, browser_page() as page:
        response = page.request.get(server.page_url("cnnlab/marking/api/sheet?folder=../grades"))
        assert response.status == 400 and "outside the server's root" in response.text()
        page.goto(server.page_url("cnnlab/marking?folder=grades"))
        xsrf = page.evaluate("XSRF")
        bad = page.request.post(server.page_url("cnnlab/marking/api/mark?folder=grades"), headers={"X-XSRFToken": xsrf},
                                data=json.dumps({"assignment": "conv_basics", "student": "ann", "grade_id": "why_shorter",
                                                 "points": 4}))  # fmt: skip
        assert bad.status == 400 and "outside 0 to 1" in bad.json()["error"]
    assert not (inside / "marks.json").exists()


def _two_task_grades(root: Path) -> Path:
    """Two written tasks, so the page's task menu has a choice."""
    out = root / "grades"
    cells = (CellResult("why_shorter", 0.0, 1.0, None, "written answer: graded by a person"),
             CellResult("why_padding", 0.0, 2.0, None, "written answer: graded by a person"))  # fmt: skip
    results = [SubmissionResult(s, "conv_basics", f"submitted/{s}/conv_basics/conv_basics.ipynb", "graded", cells,
                                manual_answers=(("why_shorter", a or "x"), ("why_padding", "Padding keeps the size.")))
               for s, a in ANSWERS.items()]  # fmt: skip
    publish(out, Sheet(1, "bwrap", results, source=str(SOURCE)))
    return out


def _make_mark_default_url() -> str:
    """The ``--LabApp.default_url`` that ``make mark`` passes, read from the Makefile (GRADES=grades)."""
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    match = re.search(r"--LabApp\.default_url='([^']+)'", makefile)
    assert match, "make mark must set --LabApp.default_url (JupyterLab overrides --ServerApp.default_url)"
    return match.group(1).replace("$(GRADES)", "grades")


def test_make_mark_lands_on_the_marking_page_and_a_task_change_while_saving_keeps_the_mark(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    out = _two_task_grades(root)
    landing = _make_mark_default_url()
    with jupyter(root, app="lab", extensions={"cnnlab.marking": True}, args=(f"--LabApp.default_url={landing}",)) \
            as server, browser_page() as page:  # fmt: skip
        page.goto(server.page_url(""))  # what `make mark` opens: the server's front page
        page.wait_for_function("document.getElementById('who')?.textContent === 'ann'", timeout=60_000)
        assert "/cnnlab/marking" in page.url
        page.keyboard.type("1")  # and at once, before the save has gone out, another task
        page.select_option("#task", index=1)
        page.wait_for_function("document.getElementById('max').textContent === '/ 2'")
        page.wait_for_function("document.getElementById('status').textContent === 'not marked yet'")
        assert page.errors == []
        page.keyboard.type("2")
        page.wait_for_function("document.getElementById('status').textContent === 'saved'")
    stored = json.loads((out / "marks.json").read_text())["marks"]["conv_basics"]["ann"]
    assert stored["why_shorter"]["points"] == 1 and stored["why_padding"]["points"] == 2


def test_the_class_at_a_glance_opens_from_the_marking_page_with_the_marks_as_they_stand(tmp_path):
    from cnnlab.grading.results.marks import set_mark  # noqa: PLC0415

    root = tmp_path / "course"
    root.mkdir()
    out = _grades(root)
    assert "3 written answers" not in (out / "class.html").read_text()  # drawn by the run: 0 marked, 3 waiting
    assert "0 written answers marked, 3 waiting" in (out / "class.html").read_text()
    set_mark(out, "conv_basics", "ann", "why_shorter", 1, "Good.")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with jupyter(root, extensions={"cnnlab.marking": True}) as server, browser_page() as page:
        page.goto(server.page_url("cnnlab/marking?folder=grades"))
        page.wait_for_function("document.getElementById('who').textContent === 'ann'")
        with page.context.expect_page() as opened:
            page.click("#classlink")
        glance = opened.value
        glance.wait_for_load_state()
        assert glance.inner_text("h1") == "The class at a glance"
        assert "1 written answer marked, 2 waiting." in glance.inner_text("body")
        figures = glance.locator("svg")
        assert figures.count() == 3  # scores, lateness, marking (these rows record no checks and fail nothing)
        widths = [figures.nth(i).bounding_box()["width"] for i in range(figures.count())]
        assert min(widths) > 300 and max(widths) <= 1366  # readable, and no wider than the laptop screen
        glance.screenshot(path=shots / "class-at-a-glance.png", full_page=True)
        assert page.errors == [] and glance.errors == []
    assert "1 written answer marked, 2 waiting." in (out / "class.html").read_text()  # saved beside the grades
    print(f"screenshots: {shots}")
