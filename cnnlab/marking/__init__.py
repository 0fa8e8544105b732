"""The marking page: a Jupyter server extension where an instructor marks written answers.

Enabled in the instructor's JupyterLab (``make lab`` does it; by hand:
``jupyter lab --ServerApp.jpserver_extensions='{"cnnlab.marking": true}'``), it
serves ``<lab URL>/cnnlab/marking?folder=grades``: one written task, one
student at a time, with the question and the model answer from the source,
the student's answer, a points box bounded by the task's maximum and a comment
box. Marks save as you type, under a lock and atomically, into the grade
folder's ``marks.json`` (:mod:`cnnlab.grading.results.marks`), and every save rewrites
``grades.csv``, ``grades.json`` and that student's feedback page.

Why a server extension, as nbgrader's formgrader is: it runs inside the
server the instructor already has open, behind its login, with no second
process or port to manage, and needs no JavaScript build (the page is one
static HTML file).
"""

from __future__ import annotations

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points():
    return [{"module": "cnnlab.marking"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from cnnlab.marking.handlers import handlers  # noqa: PLC0415 -- tornado only inside a server

    serverapp.web_app.add_handlers(".*$", handlers(serverapp.web_app.settings["base_url"]))
    serverapp.log.info("cnnlab marking page at %scnnlab/marking?folder=<grade folder>",
                       serverapp.web_app.settings["base_url"])  # fmt: skip
