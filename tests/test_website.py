"""The course website (book/, `make website`): built from notebooks/ and exercises/, read in chromium offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import browser_page

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
pytestmark = pytest.mark.slow


def test_the_book_is_the_notebooks_themselves_not_a_copy():
    assert os.readlink(ROOT / "book" / "lessons") == "../notebooks"
    assert os.readlink(ROOT / "book" / "exercises") == "../exercises"
    toc = (ROOT / "book" / "_toc.yml").read_text()
    for lesson in LESSONS:
        assert f"file: lessons/{lesson.stem}\n" in toc and f"file: exercises/{lesson.stem}\n" in toc


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "_site"
    done = subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), "--out", str(out)], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _figures_in(lesson: Path) -> int:
    return sum("image/png" in output.get("data", {}) for cell in json.loads(lesson.read_text())["cells"]
               for output in cell.get("outputs", []))  # fmt: skip


def test_every_lesson_reads_offline_with_its_figures_math_and_exercise(site, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with browser_page() as page:
        asked = []
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                   else (asked.append(route.request.url), route.abort()))  # fmt: skip
        page.goto((site / "index.html").as_uri())  # redirects to the introduction
        page.wait_for_selector("nav.bd-links a.reference")
        nav = page.locator("nav.bd-links a.reference")
        titles = [nav.nth(i).inner_text() for i in range(nav.count())]
        assert sum(t[:3] in {f"{n:02d} " for n in range(1, 7)} for t in titles) == 6
        assert sum(t.startswith("Assignment 0") for t in titles) == 6
        page.screenshot(path=shots / "index.png")
        for lesson in LESSONS:
            page.goto((site / "lessons" / f"{lesson.stem}.html").as_uri())
            page.wait_for_load_state()
            images = page.locator("article img")
            assert images.count() == _figures_in(lesson), lesson.name  # every stored figure, none lost
            assert all(page.evaluate("(img) => img.complete && img.naturalWidth > 0", images.nth(i).element_handle())
                       for i in range(images.count()))  # fmt: skip
            if lesson == LESSONS[0]:  # typesetting a whole lesson is slow: one lesson shows MathJax works offline
                page.wait_for_function("typeof MathJax !== 'undefined' && MathJax.Hub && MathJax.Hub.queue.pending === 0"
                                       " && MathJax.Hub.queue.running === 0", timeout=60_000)  # fmt: skip
                assert page.locator(".MathJax").count() > 20, "math not typeset"
            page.screenshot(path=shots / f"{lesson.stem}.png")
            page.locator(f"a[href='../exercises/{lesson.stem}.html']").first.click()
            page.wait_for_load_state()
            assert page.url.endswith(f"exercises/{lesson.stem}.html")
            assert page.locator("h1").first.inner_text().startswith(f"Assignment {lesson.stem[:2]}")
        assert asked == []  # no font, script or style came from the network
        assert page.errors == [], page.errors
    print(f"screenshots: {shots}")
