"""``cnnlab assign``: generate student versions from the instructor sources.

The transformation is nbgrader's own (its ``LockCells``, ``ClearSolutions``,
``ClearOutput``, ``ClearHiddenTests``, ``ClearMarkScheme`` and
``ComputeChecksums`` preprocessors, in the order ``nbgrader
generate_assignment`` applies them), followed by a normalisation that makes
the output byte-identical run to run: no execution counts or outputs,
notebook metadata reduced to the kernelspec and language, cell metadata
reduced to what nbgrader and JupyterLab read, nbformat 4.5 cell ids kept
from the source (so the grader can match cells back).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from cnnlab.grading.authoring import variants
from cnnlab.grading.authoring.source import read_notebook, rubric_problems, unrecorded_tests, validate
from cnnlab.notebooks import clean_metadata

__all__ = ["AssignResult", "assign", "assign_per_student", "check", "student_version", "render"]


def _preprocessors():
    from nbgrader.preprocessors import (  # noqa: PLC0415 -- nbgrader is slow to import
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
        ComputeChecksums,
        LockCells,
    )

    return [
        LockCells(),
        ClearSolutions(),
        ClearOutput(),
        ClearHiddenTests(),
        ClearMarkScheme(),
        ComputeChecksums(),
    ]


def normalise(nb) -> None:
    """Strip what varies between runs or machines, in place."""
    clean_metadata(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if "attachments" in cell and not cell.attachments:
            del cell["attachments"]


def student_version(source_nb, name: str = "notebook"):
    """The student version of a validated source notebook (a new object)."""
    validate(source_nb, name)
    variants.choices(source_nb)  # a malformed variant cell is an error here, not at grading time
    nb = copy.deepcopy(source_nb)
    nbformat.validator.normalize(nb)
    resources: dict = {}
    for preprocessor in _preprocessors():
        nb, resources = preprocessor.preprocess(nb, resources)
    normalise(nb)
    return nb


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


@dataclass
class AssignResult:
    written: list[Path]
    stale: list[str]  # for --check: files that differ, are missing, or should not be there
    warnings: list[str] = field(default_factory=list)  # test cells whose verdicts a submission could forge
    rubrics: list[str] = field(default_factory=list)  # written answers without a rubric that adds up


def _warnings(source_dir: Path) -> list[str]:
    found = []
    for path in _sources(source_dir):
        if cells := unrecorded_tests(read_notebook(path)):
            found.append(f"{path}: test cells with no record() call, decided inside the student's kernel "
                         f"(a submission can forge them): {', '.join(cells)}")  # fmt: skip
    return found


def _rubrics(source_dir: Path) -> list[str]:
    return [line for path in _sources(source_dir) for line in rubric_problems(read_notebook(path), str(path))]


def _sources(source_dir: Path) -> list[Path]:
    if not source_dir.is_dir():
        raise FileNotFoundError(f"source directory {source_dir} does not exist")
    return sorted(source_dir.glob("*.ipynb"))


def _expected(source_dir: Path) -> dict[str, str]:
    return {
        path.name: render(student_version(read_notebook(path), str(path))) for path in _sources(source_dir)
    }


def assign(source_dir: Path, out_dir: Path) -> AssignResult:
    """Write a student version of every ``source_dir/*.ipynb`` into ``out_dir``."""
    expected = _expected(source_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in expected.items():
        target = out_dir / name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    return AssignResult(written, [], _warnings(source_dir), _rubrics(source_dir))


def check(source_dir: Path, out_dir: Path) -> AssignResult:
    """Compare ``out_dir`` with what :func:`assign` would write; list what differs."""
    expected = _expected(source_dir)
    stale = []
    for name, text in expected.items():
        target = out_dir / name
        if not target.is_file():
            stale.append(f"{target}: missing")
        elif target.read_text(encoding="utf-8") != text:
            stale.append(f"{target}: differs from its source {source_dir / name}")
    if out_dir.is_dir():
        stale += [
            f"{p}: has no source in {source_dir}"
            for p in sorted(out_dir.glob("*.ipynb"))
            if p.name not in expected
        ]
    return AssignResult([], stale, _warnings(source_dir), _rubrics(source_dir))


def assign_per_student(source_dir: Path, out_dir: Path, roster: list[str], secret: bytes) -> AssignResult:
    """Write each student of ``roster`` a student version of every source, with that student's variant values.

    Layout: ``out_dir/<student>/<assignment>/<notebook>.ipynb`` (nbgrader's per-student layout, the
    one ``submitted/`` and ``feedback/`` use); release each student's folder to that student only.
    A source without a variant cell gives every student the same notebook.
    """
    sources = _sources(source_dir)
    nbs = {path: read_notebook(path) for path in sources}
    options = {path: variants.choices(nb) for path, nb in nbs.items()}
    written = []
    for student in roster:
        for path, nb in nbs.items():
            values = variants.draw(secret, path.stem, student, options[path]) if options[path] else {}
            text = render(student_version(variants.with_values(nb, values), str(path)))
            target = out_dir / student / path.stem / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
            written.append(target)
    return AssignResult(written, [], _warnings(source_dir), _rubrics(source_dir))
