"""Re-execute a notebook and store it the way the suite keeps notebooks.

``cnnlab refresh NOTEBOOK...`` runs each notebook top to bottom in a fresh
kernel (in its own folder) and writes it back with its outputs, nbformat 4.5,
the Python 3 (ipykernel) kernelspec, no execution timings and no machine
paths, so that a re-run that changes nothing changes no bytes.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

__all__ = ["clean_metadata", "refresh"]

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
CELL_METADATA_KEPT = ("nbgrader", "deletable", "editable", "tags", "cnnlab")  # "cnnlab": a variant cell's choices (grading.authoring.variants)


def clean_metadata(nb) -> None:
    """nbformat 4.5, the standard kernelspec, and only the cell metadata nbgrader and JupyterLab read."""
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict(
            {k: cell.metadata[k] for k in CELL_METADATA_KEPT if k in cell.metadata}
        )


def refresh(path: Path, *, timeout: int = 600) -> float:
    """Execute ``path`` in place; return the seconds it took."""
    import time  # noqa: PLC0415

    from nbclient import NotebookClient  # noqa: PLC0415

    nb = nbformat.read(str(path), as_version=4)
    started = time.monotonic()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent.resolve())}}).execute()  # fmt: skip
    seconds = time.monotonic() - started
    clean_metadata(nb)
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return seconds
