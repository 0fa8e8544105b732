"""Step 4 of grading: verdicts, made in the grader's process from what left the kernel.

A test cell (its visible and hidden parts, and the answer cell before it)
earns its points only when

* the kernel's ``execute_reply`` for every part says ``ok`` (an exception
  handler installed by the submission can hide an error's *output*, not the
  reply), no part timed out, and the kernel was alive to run it;
* every key the reference recorded for the cell arrived exactly once and
  passes the reference's comparison (:func:`cnnlab.grading.record.matches`).

A cell whose reference recorded nothing is decided by the replies alone, as
nbgrader decides it; :func:`unrecorded` lists those cells so the instructor
knows which verdicts a kernel could forge.

Partial credit: when the reference's records for a cell carry ``points``
(``record(key, value, points=1)``), each check earns its own points: its key
arrived exactly once and passes. Errors, time-outs and a dead kernel still
cost the checks whose values never arrived. :func:`partial_problems` rejects a
source whose shares do not add up to the cell's points.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cnnlab.grading.authoring.source import GradeItem, unanswered
from cnnlab.grading.pipeline.restore import segment
from cnnlab.grading.record import Record, matches, records_in

__all__ = ["CellResult", "Check", "Reference", "collect_records", "partial_problems", "score", "unrecorded"]

Reference = dict[str, dict[str, Record]]  # grade_id -> key -> the source's record
WRITTEN_PENDING = "written answer: graded by a person"
NOT_ANSWERED = "not answered: the cell holds only what the exercise gave"
HIDDEN_FAILED = "hidden test failed"
WITHHELD = "the error message is not shown: it quotes the hidden tests' code"
MIN_QUOTED = 12  # a line of hidden code this long, found in a message, withholds the message


@dataclass(frozen=True)
class Check:
    """One recorded check of a partial-credit cell: its key and points, never its values."""

    key: str
    points: float
    max_points: float
    message: str = ""  # why it failed; "" when it passed

    @property
    def passed(self) -> bool:
        return self.points == self.max_points


@dataclass(frozen=True)
class CellResult:
    grade_id: str
    points: float
    max_points: float
    passed: bool | None  # None: a written answer, graded by a person
    message: str = ""
    hidden: bool = False  # the cell has hidden tests
    unrecorded: bool = False  # no record(): verdict from the kernel's replies only
    checks: tuple[Check, ...] = ()  # partial credit: one per recorded check
    marked: bool = False  # a written answer a person has given points (passed stays None)
    comment: str = ""  # that person's comment
    title: str = ""  # the task's title as the student saw it ("Task 8: edge magnitude"); "" when unknown


def collect_records(executed) -> Reference:
    """Every record in an executed notebook, by grade_id and key (the last one of a key wins)."""
    found: Reference = {}
    for cell in executed.cells:
        grade_id = segment(cell).get("grade_id")
        if not grade_id:
            continue
        records, _ = records_in(cell)
        for key, payloads in records.items():
            found.setdefault(grade_id, {})[key] = payloads[-1]
    return found


def unrecorded(items: list[GradeItem], reference: Reference) -> list[str]:
    """grade_ids of autograded cells whose tests record no value."""
    return [item.grade_id for item in items if not item.manual and not reference.get(item.grade_id)]


def partial_problems(items: list[GradeItem], reference: Reference) -> list[str]:
    """What is wrong with the partial-credit declarations of a source's records (``[]``: nothing)."""
    problems = []
    for item in items:
        records = list(reference.get(item.grade_id, {}).values())
        shares = [r.points for r in records if r.points is not None]
        if not shares:
            continue
        if len(shares) != len(records):
            problems.append(f"{item.grade_id}: {len(shares)} of its {len(records)} records give points; "
                            "give points on every record of the cell or on none")  # fmt: skip
        elif abs(sum(shares) - item.points) > 1e-9:
            problems.append(f"{item.grade_id}: its records' points add up to {sum(shares):g}, "
                            f"but the cell is worth {item.points:g}")  # fmt: skip
    return problems


def _failure_of_part(index: int, cell, kind: str, execution) -> str | None:
    if index in execution.timed_out_cells:
        return "timed out"
    if execution.died_at_cell is not None and index >= execution.died_at_cell:
        return f"not run: the kernel stopped ({execution.status}) before or during this test"
    reply = execution.replies.get(index)
    if reply is None:
        return "not run"
    if reply.status == "ok":
        return None
    ename, evalue = reply.ename, reply.evalue
    if not ename:  # the reply carries no name: fall back on the error output, if one was shown
        shown = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        ename, evalue = (str(shown.get("ename", "")), str(shown.get("evalue", ""))) if shown else ("", "")
    if ename == "NotImplementedError":
        return "not implemented yet: the answer still raises NotImplementedError"
    if kind == "hidden":  # what the kernel says about hidden code could quote it: only the grader's words
        return HIDDEN_FAILED
    if not ename:
        return "the cell failed (the kernel replied 'error'; no message was shown)"
    return f"{ename[:200]}: {evalue[:500]}".rstrip(": ")


def _received(parts: list) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {}
    for _, cell, _ in parts:
        for key, payloads in records_in(cell)[0].items():
            found.setdefault(key, []).extend(payloads)
    return found


def _check_failure(got: list[Record], reference: Record) -> str:
    """Why the values received for one key fail the reference ("" when they pass)."""
    if len(got) != 1:
        return "missing" if not got else "sent more than once"
    if matches(got[0], reference):
        return ""
    if reference.compare.kind == "artefact":
        value = got[0].value if isinstance(got[0].value, dict) else {}
        if isinstance(value.get("error"), str):
            return f"the grader could not measure it: {value['error'][:300]}"
        measured = value.get("data") if isinstance(value.get("data"), dict) else {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(measured.items()) if isinstance(v, (int, float)))
        return f"not {reference.compare.describe()}; measured: {shown or 'nothing'}"
    return "wrong value" if reference.compare.kind != "bounds" else f"not {reference.compare.describe()}"


def _score_partial(item: GradeItem, parts: list, expected: dict[str, Record], execution) -> CellResult:
    """Each check earns its share; a part that failed is named, but costs only the checks it did not send."""
    received = _received(parts)
    checks = []
    for key, reference in expected.items():
        why = _check_failure(received.get(key, []), reference)
        checks.append(Check(key, 0.0 if why else float(reference.points), float(reference.points), why))
    failures = [f for f in (_failure_of_part(i, c, k, execution) for i, c, k in parts) if f]
    passed = sum(c.passed for c in checks)
    message = f"{passed} of {len(checks)} checks passed" + (f"; {failures[0]}" if failures else "")
    if not passed and failures:  # nothing arrived that passes: what stopped it is the whole story
        message = failures[0]
    return CellResult(item.grade_id, sum(c.points for c in checks), item.points, passed == len(checks),
                      message if passed < len(checks) or failures else "", hidden=any(k == "hidden" for *_, k in parts),
                      checks=tuple(checks))  # fmt: skip


def _score_cell(item: GradeItem, parts: list, expected: dict[str, Record], execution) -> CellResult:
    if expected and all(r.points is not None for r in expected.values()):
        return _score_partial(item, parts, expected, execution)
    hidden = any(kind == "hidden" for _, _, kind in parts)
    failure = None
    received: dict[str, list[Record]] = {}
    for index, cell, kind in parts:
        failure = _failure_of_part(index, cell, kind, execution)
        if failure:
            break
        records, malformed = records_in(cell)
        if malformed:
            failure = "malformed test result"
            break
        for key, payloads in records.items():
            received.setdefault(key, []).extend(payloads)
    if failure is None and not parts:
        failure = "not run"
    if failure is None:
        for key, reference in expected.items():
            why = _check_failure(received.get(key, []), reference)
            if why in ("missing", "sent more than once"):
                failure = f"hidden test result {key!r} {why}"
                break
            if why:
                failure = f"hidden test {key!r}: {why}"
                break
    points = item.points if failure is None else 0.0
    return CellResult(item.grade_id, points, item.points, failure is None, failure or "", hidden=hidden,
                      unrecorded=not expected)  # fmt: skip


def _withheld(message: str, hidden_lines: list[str]) -> str:
    """``message``, unless it quotes a line of hidden test code (a kernel can read the code as it runs)."""
    return WITHHELD if any(line in message for line in hidden_lines) else message


def _hidden_lines(executed) -> list[str]:
    lines = set()
    for cell in executed.cells:
        if segment(cell).get("kind") == "hidden":
            lines |= {line.strip() for line in str(cell.get("source", "")).splitlines() if len(line.strip()) >= MIN_QUOTED}
    return sorted(lines)


def _manual(item: GradeItem, answer: str | None) -> CellResult:
    """A task a person marks: queued for marking, unless the student left it as the exercise gave it."""
    if answer is None or unanswered(answer, item.question):
        return CellResult(item.grade_id, 0.0, item.points, False, NOT_ANSWERED)
    return CellResult(item.grade_id, 0.0, item.points, None, WRITTEN_PENDING)


def score(items: list[GradeItem], reference: Reference, executed, execution,
          failed: dict[str, str] | None = None) -> list[CellResult]:  # fmt: skip
    """One :class:`CellResult` per grade cell, in the order of ``items``.

    ``executed`` is a notebook made by :func:`cnnlab.grading.pipeline.restore.restore`
    and run by :func:`cnnlab.grading.pipeline.execute.execute`, which gave ``execution``.
    ``failed``: grade cells that score 0 whatever arrived, with why (a task the kernel died
    in, left out of the run that was scored).
    """
    failed = failed or {}
    by_grade: dict[str, list] = {}
    answers: dict[str, str] = {}
    for index, cell in enumerate(executed.cells):
        seg = segment(cell)
        if seg.get("kind") == "answer" and seg.get("grade_id"):
            answers[seg["grade_id"]] = str(cell.get("source", ""))
        if seg.get("grade_id") and seg.get("kind") in ("visible", "hidden", "answer") and cell.cell_type == "code":
            by_grade.setdefault(seg["grade_id"], []).append((index, cell, seg["kind"]))
    hidden_lines = _hidden_lines(executed)
    results = []
    for item in items:
        if item.grade_id in failed:
            results.append(CellResult(item.grade_id, 0.0, item.points, False,
                                      failed[item.grade_id]))  # fmt: skip
            continue
        if item.manual:
            results.append(_manual(item, answers.get(item.grade_id)))
            continue
        result = _score_cell(item, by_grade.get(item.grade_id, []), reference.get(item.grade_id, {}), execution)
        checks = tuple(dataclasses.replace(k, message=_withheld(k.message, hidden_lines)) for k in result.checks)
        results.append(dataclasses.replace(result, message=_withheld(result.message, hidden_lines), checks=checks))
    return [dataclasses.replace(r, title=item.title) for r, item in zip(results, items, strict=True)]
