"""A variant of an assignment per student: values drawn from a keyed hash of the student's name.

A source declares its parameters in one locked code cell, the *variant cell*, which
assigns each parameter its default value and lists its choices in the cell's
metadata, under a key nbgrader ignores (so real nbgrader autogrades the source,
with the defaults)::

    # metadata: {"cnnlab": {"variant": {"EDGE_SMOOTHING": [[1, 1, 1], [1, 2, 1], [3, 10, 3]]}},
    #            "nbgrader": {"locked": true, "grade_id": "variant", ...}}
    EDGE_SMOOTHING = [1, 2, 1]

Each student's value of each parameter is ``choices[HMAC-SHA256(secret, assignment,
student, name) mod len(choices)]``: the same every time, and no student can compute
another's without the course secret. ``cnnlab assign --roster`` writes each student
their copy; ``cnnlab grade --secret`` derives the values again from the student's
name (never from the notebook), rebuilds the variant cell with them, and runs the
reference once per distinct variant.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path

from cnnlab.grading.authoring.source import SourceError, cell_key, is_grade, is_solution, meta

__all__ = ["VariantError", "choices", "describe", "draw", "new_secret", "read_roster", "read_secret", "values_in",
           "variant_cell", "with_values"]  # fmt: skip

METADATA_KEY = "cnnlab"
_SAFE_STUDENT = re.compile(r"^[^/\\\0]+$")


class VariantError(SourceError):
    """A variant cell, a secret or a roster that cannot be used; the message says which and why."""


def variant_cell(nb):
    """The notebook's variant cell, or None. Raises :class:`VariantError` for two, or for one that is not locked code."""
    found = [c for c in nb.cells if isinstance(c.get("metadata", {}).get(METADATA_KEY), dict)
             and "variant" in c.metadata[METADATA_KEY]]  # fmt: skip
    if not found:
        return None
    if len(found) > 1:
        raise VariantError(f"{len(found)} cells declare variant parameters; one cell per notebook is supported")
    cell = found[0]
    if cell.cell_type != "code" or is_solution(cell) or is_grade(cell) or not meta(cell).get("locked"):
        raise VariantError("the variant cell must be a locked code cell (nbgrader: locked, neither solution nor grade)")
    return cell


def choices(nb) -> dict[str, list]:
    """``{name: [choice, ...]}`` declared by the notebook's variant cell (empty without one), checked:
    every name is a Python identifier with a non-empty list of JSON values, assigned once in the cell
    to a value among its choices (the default nbgrader runs)."""
    cell = variant_cell(nb)
    if cell is None:
        return {}
    declared = cell.metadata[METADATA_KEY]["variant"]
    if not isinstance(declared, dict) or not declared:
        raise VariantError("the variant cell's metadata 'variant' must map each parameter name to its list of choices")
    defaults = _assignments(cell.source)
    for name, options in declared.items():
        if not str(name).isidentifier():
            raise VariantError(f"variant parameter {name!r} is not a Python name")
        if not isinstance(options, list) or not options:
            raise VariantError(f"variant parameter {name}: its choices must be a non-empty list, got {options!r}")
        if name not in defaults:
            raise VariantError(f"variant parameter {name} is not assigned in the variant cell (`{name} = ...`)")
        if _canonical(defaults[name]) not in {_canonical(o) for o in options}:
            raise VariantError(f"variant parameter {name}: the cell's value {defaults[name]!r} is not one of its "
                               f"choices {options!r}")  # fmt: skip
    return dict(declared)


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def _assignments(source: str) -> dict[str, object]:
    """``{name: value}`` for each top-level ``name = <literal>`` in ``source``; what cannot be read is left out."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # a student's cell may be anything
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            found[node.targets[0].id] = list(value) if isinstance(value, tuple) else value
    return found


def draw(secret: bytes, assignment: str, student: str, options: dict[str, list]) -> dict[str, object]:
    """Each parameter's value for ``student``: a choice picked by HMAC-SHA256 of (assignment, student, name)."""
    if not secret:
        raise VariantError("the course secret is empty")
    values = {}
    for name, listed in options.items():
        digest = hmac.new(secret, f"{assignment}\0{student}\0{name}".encode(), hashlib.sha256).digest()
        values[name] = listed[int.from_bytes(digest, "big") % len(listed)]
    return values


def with_values(nb, values: dict[str, object]):
    """A copy of ``nb`` whose variant cell assigns ``values`` (a notebook without one is returned as a copy)."""
    out = copy.deepcopy(nb)
    cell = variant_cell(out)
    if cell is None or not values:
        return out
    lines = []
    for line in cell.source.splitlines():
        name = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        lines.append(f"{name} = {values[name]!r}" if name in values else line)
    cell.source = "\n".join(lines)
    return out


def values_in(nb, source_nb) -> dict[str, object] | None:
    """The values a (student's) ``nb`` shows in the source's variant cell, matched by grade_id; None without one."""
    cell = variant_cell(source_nb)
    if cell is None:
        return None
    key = cell_key(cell)
    mine = next((c for c in nb.cells if cell_key(c) == key and c.get("cell_type") == "code"), None)
    if mine is None:
        return None
    found = _assignments(str(mine.get("source", "")))
    return {name: found.get(name) for name in cell.metadata[METADATA_KEY]["variant"]}


def describe(values: dict[str, object], limit: int = 80) -> str:
    """``NAME = value, ...``, each value's repr cut to ``limit`` characters (a student's cell may hold anything)."""
    shown = [(name, repr(value)) for name, value in values.items()]
    return ", ".join(f"{name} = {text if len(text) <= limit else text[:limit] + '...'}" for name, text in shown)


def new_secret(path: Path) -> bytes:
    """Write a new random course secret to ``path`` (readable by its owner only) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    with open(path, "x", encoding="ascii") as handle:  # never overwrite an existing secret
        path.chmod(0o600)
        handle.write(secret + "\n")
    return secret.encode()


def read_secret(path: Path) -> bytes:
    """The course secret in ``path``. Raises :class:`VariantError` for a missing, unreadable or empty file."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as error:
        raise VariantError(f"--secret {path}: cannot read it ({error.strerror or error})") from None
    if len(secret) < 16:
        raise VariantError(f"--secret {path}: holds {len(secret)} bytes; a course secret needs at least 16")
    return secret


def read_roster(path: Path, column: str = "student") -> list[str]:
    """Student names from ``path``: one per line, or a CSV with a header and a ``column`` column.

    Raises :class:`VariantError` naming the line of an empty, duplicated or unsafe name (a folder
    name cannot contain ``/``, start with ``.``, or be too long).
    """
    import csv  # noqa: PLC0415

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise VariantError(f"--roster {path}: cannot read it ({error})") from None
    lines = text.splitlines()
    if lines and "," in lines[0]:
        rows = list(csv.reader(lines))
        header = [h.strip() for h in rows[0]]
        if column not in header:
            raise VariantError(f"--roster {path}: its header has no {column!r} column (it has {', '.join(header)})")
        index = header.index(column)
        names = [(n + 2, row[index].strip() if index < len(row) else "") for n, row in enumerate(rows[1:])]
    else:
        names = [(n + 1, line.strip()) for n, line in enumerate(lines)]
    students, problems = [], []
    for line, name in names:
        if not name:
            continue
        if not _SAFE_STUDENT.match(name) or name.startswith(".") or len(name.encode()) > 200:
            problems.append(f"line {line}: {name!r} cannot be a folder name")
        elif name in students:
            problems.append(f"line {line}: {name!r} is listed twice")
        else:
            students.append(name)
    if problems:
        raise VariantError(f"--roster {path}:\n  " + "\n  ".join(problems))
    if not students:
        raise VariantError(f"--roster {path}: lists no student")
    return students
