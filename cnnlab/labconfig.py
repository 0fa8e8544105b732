"""``cnnlab configure-lab``: the course's JupyterLab settings, written into an environment's prefix.

A student's Lab shows the lessons and the exercises, and nothing that gets in their way:

* JupyterLab's "news" prompt and update check are off (a settings override);
* nbgrader's instructor tools are off: its Lab extension ("Create Assignment", the formgrader
  menu, a Validate button that said "Success!" on lessons, which have no tests, and rewrote
  their metadata) and its server extensions. Assignments are checked with
  ``cnnlab validate``; instructors grade with ``cnnlab grade`` and mark with ``make mark``.
  nbgrader's command line still works (``tests/grading/test_nbgrader_compat.py``).

The files go into ``sys.prefix`` (the course's ``.venv``, or an image's prefix), never into
a home folder or the repository, and writing them twice changes nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["SETTINGS", "configure"]

NBGRADER_SERVER_EXTENSIONS = ("formgrader", "validate_assignment", "assignment_list", "course_list")

SETTINGS: dict[str, dict] = {
    # JupyterLab reads overrides.json from its application settings folder.
    "share/jupyter/lab/settings/overrides.json": {
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    },
    # Disabled front-end packages, by name.
    "etc/jupyter/labconfig/page_config.json": {"disabledExtensions": {"@jupyter/nbgrader": True}},
    # The top-level file is read after jupyter_server_config.d/ (where nbgrader enables itself): it wins.
    "etc/jupyter/jupyter_server_config.json": {
        "ServerApp": {"jpserver_extensions": {f"nbgrader.server_extensions.{name}": False
                                              for name in NBGRADER_SERVER_EXTENSIONS}},  # fmt: skip
    },
}


def configure(prefix: Path | None = None) -> list[Path]:
    """Write :data:`SETTINGS` under ``prefix`` (default ``sys.prefix``), merged into what is there; return the files."""
    prefix = Path(sys.prefix if prefix is None else prefix)
    written = []
    for relative, wanted in SETTINGS.items():
        path = prefix / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError):
            current = {}
        merged = _merge(current if isinstance(current, dict) else {}, wanted)
        text = json.dumps(merged, indent=2, sort_keys=True) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _merge(current: dict, wanted: dict) -> dict:
    out = dict(current)
    for key, value in wanted.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
