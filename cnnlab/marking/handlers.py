"""HTTP handlers of the marking page, behind the Jupyter server's own login.

==========================================  ======================================================
``GET  cnnlab/marking?folder=F``            the page
``GET  cnnlab/marking/api/sheet?folder=F``  :func:`cnnlab.marking.sheet.marking_sheet` as JSON
``POST cnnlab/marking/api/mark?folder=F``   ``{"assignment", "student", "grade_id", "points", "comment"}``
``GET  cnnlab/marking/api/marks.csv?...``   the marking sheet as CSV (:func:`cnnlab.grading.results.marks.export_csv`)
``POST cnnlab/marking/api/marks.csv?...``   import a filled-in sheet (the request body is the CSV)
``GET  cnnlab/marking/api/class.html?...``  the class at a glance, redrawn now (and saved as ``F/class.html``)
==========================================  ======================================================

``folder`` is a grade folder (the ``--out`` of ``cnnlab grade``), relative to
the server's root directory and inside it. Bad input answers 400 with a
message that says what is wrong; nothing is written then.
"""

from __future__ import annotations

import json
from pathlib import Path

import tornado.web
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join

from cnnlab.grading.results import marks
from cnnlab.marking.sheet import marking_sheet

__all__ = ["handlers"]

PAGE = Path(__file__).with_name("static") / "marking.html"


class _Folder:
    """Resolves ``?folder=`` inside the server's root directory."""

    def folder(self) -> Path:
        text = self.get_query_argument("folder", "")
        if not text:
            raise tornado.web.HTTPError(400, reason="folder: give ?folder=<grade folder>, the --out of cnnlab grade")
        root = Path(self.settings["server_root_dir"]).expanduser().resolve()
        path = (root / text).resolve()
        if path != root and root not in path.parents:
            raise tornado.web.HTTPError(400, reason=f"folder: {text!r} is outside the server's root directory")
        if not (path / "grades.json").is_file():
            raise tornado.web.HTTPError(404, reason=f"folder: {text!r} holds no grades.json; run cnnlab grade --out {text}")
        return path


class _Page(_Folder, JupyterHandler):
    """An HTML page (not JSON, as the API handlers answer), never cached: marks change it."""

    def finish_page(self, page: str) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page)


class PageHandler(_Page):
    @tornado.web.authenticated
    def get(self) -> None:
        self.folder()
        self.finish_page(PAGE.read_text(encoding="utf-8").replace("{{xsrf}}", self.xsrf_token.decode()))


class _Api(_Folder, APIHandler):
    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"error": message}))


class SheetHandler(_Api):
    @tornado.web.authenticated
    def get(self) -> None:
        try:
            self.finish(json.dumps(marking_sheet(self.folder())))
        except ValueError as error:
            self.fail(400, str(error))


class MarkHandler(_Api):
    @tornado.web.authenticated
    def post(self) -> None:
        folder = self.folder()
        try:
            body = json.loads(self.request.body or b"{}")
            row = marks.set_mark(folder, str(body["assignment"]), str(body["student"]), str(body["grade_id"]),
                                 body.get("points"), str(body.get("comment") or ""))  # fmt: skip
        except KeyError as error:
            return self.fail(400, f"the request needs assignment, student, grade_id and points; {error} is missing")
        except ValueError as error:  # MarkError, or a body that is not JSON
            return self.fail(400, str(error))
        self.finish(json.dumps({"total": row.total, "max": row.max_points, "final": row.final,
                                "pending": row.manual_pending}))  # fmt: skip


class CsvHandler(_Api):
    @tornado.web.authenticated
    def get(self) -> None:
        text = marks.export_csv(self.folder())
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="marking-sheet.csv"')
        self.finish(text)

    @tornado.web.authenticated
    def post(self) -> None:
        folder = self.folder()
        try:
            count = marks.import_csv(folder, self.request.body.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as error:
            return self.fail(400, str(error))
        self.finish(json.dumps({"imported": count}))


class ClassHandler(_Page):
    @tornado.web.authenticated
    def get(self) -> None:
        self.finish_page(marks.redraw_overview(self.folder()))


def handlers(base_url: str) -> list[tuple[str, type]]:
    root = url_path_join(base_url, "cnnlab", "marking")
    return [(root, PageHandler), (url_path_join(root, "api", "sheet"), SheetHandler),
            (url_path_join(root, "api", "mark"), MarkHandler), (url_path_join(root, "api", "marks.csv"), CsvHandler),
            (url_path_join(root, "api", "class.html"), ClassHandler)]
