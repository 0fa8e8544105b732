"""Build the course website from the lessons and exercises as they are stored: ``make website``.

    python book/build.py [--out _site]

Runs Jupyter Book (Sphinx) on ``book/``, whose ``lessons`` and ``exercises`` are links to
``notebooks/`` and ``exercises/``: one copy of each notebook, never executed here (CI checks
the stored outputs). MathJax comes from the ``jupyter_server_mathjax`` package and is copied
into the site, so every page, math included, works without a network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BOOK = Path(__file__).resolve().parent


def mathjax() -> Path:
    """The folder holding MathJax.js (MathJax 2.7, from jupyter_server_mathjax)."""
    try:
        import jupyter_server_mathjax  # noqa: PLC0415 -- a clear message when it is missing
    except ImportError:
        sys.exit("book/build.py: jupyter_server_mathjax is missing; `make setup` installs it (requirements.txt)")
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def build(out: Path) -> Path:
    """Write the site into ``out`` (replaced whole, only once the build succeeded); return ``out/index.html``."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-book-") as scratch:
        done = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(BOOK), "--path-output", scratch,
                               "--warningiserror", "--keep-going", "--quiet"], capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            sys.exit(f"book/build.py: jupyter-book failed:\n{(done.stdout + done.stderr)[-4000:]}")
        html = Path(scratch) / "_build" / "html"
        shutil.copytree(mathjax(), html / "_static" / "mathjax")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(html, out)
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BOOK.parent / "_site", help="where the site goes (default _site/)")
    args = parser.parse_args(argv)
    index = build(args.out)
    print(f"course website: {index} (open it in a browser; it needs no network)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
