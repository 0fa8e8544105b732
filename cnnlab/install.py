"""``python -m cnnlab setup``: what ``make lab`` does, for a machine without ``make`` (or ``g++``).

    python -m cnnlab setup          # .venv, the pinned packages, cnnlab, the op (if a compiler is here)
    python -m cnnlab setup --lab    # ... then JupyterLab on the course folder, as `make lab`

Run it from the course folder with Python 3.11 or later. It needs only the
standard library: the packages are not installed yet when it starts. A
machine with no C++ compiler still gets everything but the custom op, with
one line saying what is missing (the lessons run without it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["main", "steps"]

ROOT = Path(__file__).resolve().parents[1]
MARKING = '--ServerApp.jpserver_extensions={"cnnlab.marking": True}'


def _bin(folder: Path, name: str) -> Path:
    """A program inside a virtual environment: ``bin/`` on Linux and macOS, ``Scripts/`` on Windows."""
    return folder / ("Scripts" if os.name == "nt" else "bin") / (f"{name}.exe" if os.name == "nt" else name)


def steps(root: Path = ROOT, lab: bool = False) -> list[tuple[str, list[str], bool]]:
    """``(what, argv, required)`` for every step; a step that is not required may fail with a warning."""
    python = str(_bin(root / ".venv", "python"))
    found = [
        ("upgrade pip", [python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], True),
        ("install the pinned packages", [python, "-m", "pip", "install", "--quiet", "-r", str(root / "requirements.txt")], True),
        ("install cnnlab", [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e",
                            str(root)], True),  # fmt: skip
        ("configure JupyterLab", [str(_bin(root / ".venv", "cnnlab")), "configure-lab"], True),
        ("build the custom op", [str(_bin(root / ".venv", "cnnlab")), "build-ops"], False),
    ]
    if lab:
        root_flag = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        found.append(("start JupyterLab", [str(_bin(root / ".venv", "jupyter")), "lab",
                                           f"--notebook-dir={root}", MARKING, *root_flag], True))  # fmt: skip
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnlab setup", description=__doc__.splitlines()[0])
    parser.add_argument("--lab", action="store_true", help="then start JupyterLab on the course folder (as `make lab`)")
    parser.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 11):  # noqa: UP036 -- runs on whatever python3 the student has
        print(f"python -m cnnlab setup: needs Python 3.11 or later; this is {sys.version.split()[0]}", file=sys.stderr)
        return 1
    plan = steps(ROOT, args.lab)
    if not args.dry_run and not _bin(ROOT / ".venv", "python").exists():
        print(f"== create the virtual environment {ROOT / '.venv'}", flush=True)
        venv.create(ROOT / ".venv", with_pip=True)
    for what, argv_, required in plan:
        print(f"== {what}: {' '.join(argv_)}", flush=True)
        if args.dry_run:
            continue
        if what == "start JupyterLab":
            os.chdir(ROOT)
            os.execv(argv_[0], argv_)
        done = subprocess.run(argv_)
        if done.returncode != 0:
            if required:
                print(f"python -m cnnlab setup: `{what}` failed (exit {done.returncode}); see above", file=sys.stderr)
                return done.returncode
            print(f"warning: {what} failed; everything else works without it (`cnnlab doctor` says what is missing)",
                  file=sys.stderr)  # fmt: skip
    return 0
