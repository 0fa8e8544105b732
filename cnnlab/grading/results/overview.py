"""The class at a glance: ``class.html`` in the grade folder, figures first, one self-contained file.

Made from the grade sheet alone (what ``grades.json`` holds, marks applied), so it can be
redrawn whenever the sheet changes: after ``cnnlab grade`` and from the marking page. Every
figure is an SVG drawn by matplotlib and embedded in the page, which therefore works offline
and can be mailed. Sections, in the order an instructor asks:

1. scores per task: how many students got full, partial, no points, or await a grader;
2. the pass rate of every recorded check, per task;
3. the most common failure messages, grouped by task and message;
4. lateness: on time, late by how much, or no submission time;
5. marking progress: written answers marked and still waiting, per task;
6. rows nobody could grade (not-gradable, duplicate) and rejected files, with why.

Tasks are named by the titles the students read (:attr:`CellResult.title`).
"""

from __future__ import annotations

import datetime
import html
import io
from collections import Counter

from cnnlab.grading.pipeline.score import CellResult
from cnnlab.grading.results.sheet import Sheet, SubmissionResult

__all__ = ["FILE", "class_page"]

FILE = "class.html"
_COLOURS = {"full": "#2e7d32", "partial": "#f9a825", "none": "#c62828", "awaiting": "#9e9e9e", "marked": "#2e7d32",
            "on time": "#2e7d32", "late, up to 1 day": "#f9a825", "late, 1 to 3 days": "#ef6c00",
            "late, over 3 days": "#c62828", "no submission time": "#9e9e9e"}
_LABEL_CHARS = 60


def _namer(results: list[SubmissionResult]):
    """``name(row, cell)``: the task's title, after its assignment's name when the sheet holds several."""
    several = len({r.assignment for r in results}) > 1

    def name(row: SubmissionResult, cell: CellResult) -> str:
        title = cell.title or cell.grade_id
        return f"{row.assignment} · {title}" if several else title

    return name


def _short(text: str, limit: int = _LABEL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _svg(figure) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue: the figure is inline


def _figure(rows: int, width: float = 9.0):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt.subplots(figsize=(width, 0.9 + 0.38 * max(rows, 1)))


def _task_outcomes(results: list[SubmissionResult]) -> dict[str, Counter]:
    """``{task: Counter(full=, partial=, none=, awaiting=)}`` over the scored rows, tasks in sheet order."""
    name = _namer(results)
    outcomes: dict[str, Counter] = {}
    for r in (r for r in results if r.scored):
        for c in r.cells:
            if c.passed is None and not c.marked:
                kind = "awaiting"
            elif c.max_points and c.points >= c.max_points - 1e-9:
                kind = "full"
            elif c.points > 0:
                kind = "partial"
            else:
                kind = "none"
            outcomes.setdefault(name(r, c), Counter())[kind] += 1
    return outcomes


def _stacked(counts: dict[str, Counter], kinds: tuple[str, ...], xlabel: str, title: str) -> str:
    """Horizontal stacked bars, one per key of ``counts``, first at the top."""
    figure, ax = _figure(len(counts))
    labels = [_short(k) for k in counts]
    left = [0] * len(counts)
    for kind in kinds:
        values = [c[kind] for c in counts.values()]
        ax.barh(labels, values, left=left, color=_COLOURS.get(kind), label=kind, edgecolor="white")
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(ncols=len(kinds), loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, fontsize="small",
              title=title, title_fontsize="small", alignment="left")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _svg(figure)


def _check_rates(results: list[SubmissionResult]) -> dict[str, tuple[int, int]]:
    """``{"task · check": (passed, attempts)}`` over every recorded check of the scored rows."""
    name = _namer(results)
    rates: dict[str, list[int]] = {}
    for r in (r for r in results if r.scored):
        for c in r.cells:
            for check in c.checks:
                entry = rates.setdefault(f"{_short(name(r, c), 40)} · {check.key}", [0, 0])
                entry[0] += check.passed
                entry[1] += 1
    return {k: (v[0], v[1]) for k, v in rates.items()}


def _rates_figure(rates: dict[str, tuple[int, int]]) -> str:
    figure, ax = _figure(len(rates))
    labels = list(rates)
    shares = [p / n for p, n in rates.values()]
    ax.barh(labels, shares, color=["#2e7d32" if s >= 0.8 else "#f9a825" if s >= 0.5 else "#c62828" for s in shares])
    for y, (share, (passed, attempts)) in enumerate(zip(shares, rates.values(), strict=True)):
        ax.text(min(share, 0.98), y, f" {passed}/{attempts}", va="center", ha="left" if share < 0.85 else "right",
                fontsize="small")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of students whose answer passed the check")
    return _svg(figure)


def _failures(results: list[SubmissionResult], top: int = 12) -> list[tuple[str, str, int]]:
    """``[(task, message, students), ...]``: the most common failure messages, each student counted once."""
    name = _namer(results)
    seen: Counter = Counter()
    for r in (r for r in results if r.scored):
        found = set()
        for c in r.cells:
            if c.passed is False:
                messages = [k.message for k in c.checks if not k.passed and k.message] or [c.message]
                found |= {(name(r, c), " ".join(m.split())) for m in messages if m}
        seen.update(found)
    return [(task, message, n) for (task, message), n in seen.most_common(top)]


def _failures_figure(failures: list[tuple[str, str, int]]) -> str:
    figure, ax = _figure(len(failures), width=10)
    labels = [f"{_short(task, 28)}: {_short(message, 70)}" for task, message, _ in failures]
    ax.barh(labels, [n for *_, n in failures], color="#c62828")
    ax.invert_yaxis()
    ax.set_xlabel("students")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _svg(figure)


def _lateness(results: list[SubmissionResult]) -> Counter:
    bins = Counter()
    for r in results:
        if not r.submitted_at:
            bins["no submission time"] += 1
        elif r.hours_late <= 0:
            bins["on time"] += 1
        elif r.hours_late <= 24:
            bins["late, up to 1 day"] += 1
        elif r.hours_late <= 72:
            bins["late, 1 to 3 days"] += 1
        else:
            bins["late, over 3 days"] += 1
    return bins


def _lateness_figure(bins: Counter) -> str:
    order = ["on time", "late, up to 1 day", "late, 1 to 3 days", "late, over 3 days", "no submission time"]
    labels = [b for b in order if bins[b]]
    figure, ax = _figure(len(labels), width=7)
    ax.barh(labels, [bins[b] for b in labels], color=[_COLOURS[b] for b in labels])
    ax.invert_yaxis()
    ax.set_xlabel("submissions")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _svg(figure)


def _marking(results: list[SubmissionResult]) -> dict[str, Counter]:
    """``{task: Counter(marked=, awaiting=)}`` of the written answers."""
    name = _namer(results)
    progress: dict[str, Counter] = {}
    for r in (r for r in results if r.scored):
        for c in r.cells:
            if c.passed is None or c.marked:
                progress.setdefault(name(r, c), Counter())["marked" if c.marked else "awaiting"] += 1
    return progress


def _table(rows: list[SubmissionResult]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(r.student)}</td><td>{html.escape(r.assignment)}</td><td>{html.escape(r.status)}</td>"
        f"<td>{html.escape(_short(r.notes[0], 200) if r.notes else '')}</td></tr>"
        for r in rows
    )  # fmt: skip
    return f"<table><tr><th>student</th><th>assignment</th><th>status</th><th>why</th></tr>{body}</table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The class at a glance</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; }}
section {{ margin-bottom: 2.5em; }} svg {{ max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
.muted {{ color: #555; }}
</style></head><body>
<h1>The class at a glance</h1>
<p class="muted">{summary} Drawn {when} from <code>grades.json</code>, which lies beside this page{also}.</p>
{sections}
</body></html>
"""


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def class_page(sheet: Sheet, also: str = "") -> str:
    """The page, as text: every figure inline. ``also``: other reports in the folder, named under the title."""
    results = list(sheet.results)
    scored = [r for r in results if r.scored]
    students = len({r.student for r in results})
    summary = (f"{_count(students, 'student')}, {_count(len(results), 'submission')}; {len(scored)} scored, "
               f"{sum(r.status == 'graded' for r in results)} ran to the end.")  # fmt: skip
    sections = []
    outcomes = _task_outcomes(results)
    sections.append(_section("Scores per task", _stacked(outcomes, ("full", "partial", "none", "awaiting"), "students",
                                                         "Points per task: full, partial, none, or awaiting a grader")
                             if outcomes else "<p>No scored submission yet.</p>"))  # fmt: skip
    rates = _check_rates(results)
    sections.append(_section("Pass rate per check", _rates_figure(rates) if rates else "<p>No task records checks.</p>"))
    failures = _failures(results)
    sections.append(_section("Most common failure messages", (_failures_figure(failures) + "<ul>" + "".join(
        f"<li><strong>{html.escape(t)}</strong>: {html.escape(m)} ({n} students)</li>" for t, m, n in failures) + "</ul>")
        if failures else "<p>No task failed.</p>"))  # fmt: skip
    sections.append(_section("Lateness", _lateness_figure(_lateness(results)) if results else "<p>No submissions.</p>"))
    marking = _marking(results)
    waiting = sum(c["awaiting"] for c in marking.values())
    sections.append(_section("Marking progress", (
        f"<p>{_count(sum(c['marked'] for c in marking.values()), 'written answer')} marked, {waiting} waiting.</p>"
        + _stacked(marking, ("marked", "awaiting"), "answers", "Written answers per task")) if marking
        else "<p>No written answers to mark.</p>"))  # fmt: skip
    apart = [r for r in results if not r.scored or r.status in ("rejected", "invalid-notebook")]
    sections.append(_section("Not graded, rejected or invalid", _table(apart) if apart else "<p>None: every row was graded.</p>"))
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    also = f", with {html.escape(also)}" if also else ""
    return _PAGE.format(summary=html.escape(summary), when=when, also=also, sections="\n".join(sections))
