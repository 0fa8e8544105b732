"""``cnnlab similarity``: which students' answers are alike, side by side. Never a verdict.

Each student's code answers to one assignment (the source's solution cells, matched by
``grade_id``) are joined into one document and fingerprinted with copydetect (winnowing,
the method of MOSS): names become placeholders, so renamed variables do not hide a copy.
The code the exercise gives every student (its signatures, docstrings, ``# YOUR CODE
HERE``) is boilerplate and never counts. Every pair of students is compared; the pairs
whose overlap passes a threshold are listed on one HTML page per run, with the matching
regions highlighted side by side.

Similarity is not copying: two students may write the same short loop independently, and
a task with one natural answer gives similar code. The page says what is similar; a person
decides what it means.
"""

from __future__ import annotations

import html
import io
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

from cnnlab.grading.authoring.assign import student_version
from cnnlab.grading.authoring.source import cell_key, is_solution, meta

__all__ = ["Document", "Pair", "compare", "documents", "render", "similarity_report"]

K = 20  # characters per k-gram of the filtered code (copydetect's default noise threshold is 25)
WINDOW = 4  # winnowing window (copydetect's guarantee threshold = K + WINDOW - 1)
MAX_CHARS = 200_000  # of one student's answers: a notebook stuffed with code is cut, not fingerprinted whole
THRESHOLD = 0.5  # a pair is listed when the overlap covers this share of either student's answers


@dataclass(frozen=True)
class Document:
    """One student's code answers to one assignment, joined, each headed by its ``grade_id``."""

    student: str
    assignment: str
    text: str


@dataclass(frozen=True)
class Pair:
    """Two students' documents and what they share: similarity = share of each one's tokens in the overlap."""

    first: Document
    second: Document
    similarity: tuple[float, float]
    overlap_tokens: int
    slices: tuple  # (2xN int arrays of start/end offsets into first.text, then second.text)

    @property
    def score(self) -> float:
        return max(self.similarity)


def _answers(nb, source_nb) -> str:
    """The code in ``nb``'s cells that answer ``source_nb``'s code solution cells, each after a header line."""
    wanted = [(cell_key(c), meta(c).get("grade_id", "")) for c in source_nb.cells if is_solution(c) and c.cell_type == "code"]
    by_key = {cell_key(c): c for c in nb.cells if c.get("cell_type") == "code"}
    parts = []
    for key, grade_id in wanted:
        cell = by_key.get(key)
        if cell is not None:
            parts.append(f"# --- {grade_id}\n{str(cell.get('source', ''))}\n")
    return "".join(parts)[:MAX_CHARS]


def documents(submissions: list[tuple[str, object]], source_nb, assignment: str) -> tuple[list[Document], str]:
    """``(each student's Document, the boilerplate text)`` from ``[(student, notebook), ...]``."""
    given = _answers(student_version(source_nb), source_nb)
    return [Document(student, assignment, _answers(nb, source_nb)) for student, nb in submissions], given


def _fingerprint(text: str, boilerplate: list):

    from copydetect import CodeFingerprint  # noqa: PLC0415 -- pygments and numpy: only when a report is made

    return CodeFingerprint("answers.py", K, WINDOW, boilerplate=boilerplate, fp=io.StringIO(text))


def compare(docs: list[Document], boilerplate_text: str, threshold: float = THRESHOLD) -> list[Pair]:
    """Every pair of ``docs`` whose overlap covers at least ``threshold`` of either one, most similar first."""
    from copydetect import compare_files  # noqa: PLC0415
    from copydetect.utils import filter_code, get_document_fingerprints  # noqa: PLC0415

    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # copydetect warns on empty files
    filtered, _ = filter_code(boilerplate_text, "given.py")
    boilerplate = list(get_document_fingerprints(filtered, K, WINDOW, [])[0])
    prints = [(doc, _fingerprint(doc.text, boilerplate)) for doc in docs if doc.text.strip()]
    pairs = []
    for (a, fa), (b, fb) in itertools.combinations(prints, 2):
        overlap, similarity, slices = compare_files(fa, fb)
        if overlap and max(similarity) >= threshold:
            pairs.append(Pair(a, b, (float(similarity[0]), float(similarity[1])), int(overlap), slices))
    return sorted(pairs, key=lambda p: (-p.score, p.first.student, p.second.student))


def _highlighted(text: str, slices) -> str:
    """``text`` escaped, the regions in ``slices`` (2xN start/end offsets) wrapped in <mark>."""
    out, at = [], 0
    for start, end in sorted(zip(slices[0].tolist(), slices[1].tolist(), strict=True)):
        start, end = max(start, at), max(end, at)
        out += [html.escape(text[at:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
        at = end
    out.append(html.escape(text[at:]))
    return "".join(out)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Similar answers: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 110em; }}
.pair {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1em; margin-bottom: 2.5em; }}
pre {{ background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 85%; white-space: pre-wrap; }}
mark {{ background: #ffd54f; }}
.caution {{ border-left: 4px solid #888; padding-left: 1em; color: #333; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .2em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
</style></head><body>
<h1>Similar answers: {title}</h1>
<p class="caution">This page lists what is similar, not who copied. Two students can write the same short loop on
their own, and a task with one natural answer gives similar code. Names are ignored (a renamed variable still
matches) and the code the exercise gives everyone is left out. Decide for yourself, and talk to the students first.</p>
<p>{summary}</p>
{table}
{pairs}
</body></html>
"""


def render(pairs: list[Pair], compared: dict[str, int], threshold: float) -> str:
    """The report page: a table of the pairs, then each pair's answers side by side, matches marked."""
    title = ", ".join(sorted(compared)) or "no submissions"
    summary = (f"{sum(n * (n - 1) // 2 for n in compared.values())} pairs compared "
               f"({', '.join(f'{name}: {n} students' for name, n in sorted(compared.items()))}); "
               f"{len(pairs)} share at least {threshold:.0%} of one student's answers (winnowing, k = {K}).")  # fmt: skip
    rows = "".join(
        f"<tr><td>{html.escape(p.first.assignment)}</td><td><a href='#pair-{i}'>{html.escape(p.first.student)} and "
        f"{html.escape(p.second.student)}</a></td><td>{p.similarity[0]:.0%}</td><td>{p.similarity[1]:.0%}</td>"
        f"<td>{p.overlap_tokens}</td></tr>"
        for i, p in enumerate(pairs)
    )  # fmt: skip
    table = ("<table><tr><th>assignment</th><th>pair</th><th>of the first's answers</th><th>of the second's</th>"
             f"<th>tokens shared</th></tr>{rows}</table>" if pairs else "<p>No pair passes the threshold.</p>")  # fmt: skip
    blocks = "".join(
        f"<h2 id='pair-{i}'>{html.escape(p.first.assignment)}: {html.escape(p.first.student)} "
        f"({p.similarity[0]:.0%}) and {html.escape(p.second.student)} ({p.similarity[1]:.0%})</h2>"
        f"<div class='pair'><div><h3>{html.escape(p.first.student)}</h3><pre>{_highlighted(p.first.text, p.slices[0])}"
        f"</pre></div><div><h3>{html.escape(p.second.student)}</h3><pre>{_highlighted(p.second.text, p.slices[1])}"
        f"</pre></div></div>"
        for i, p in enumerate(pairs)
    )  # fmt: skip
    return _PAGE.format(title=html.escape(title), summary=html.escape(summary), table=table, pairs=blocks)


def similarity_report(inputs: list[Path], source: Path, out: Path, threshold: float = THRESHOLD) -> tuple[Path, list[Pair]]:
    """Compare every student's answers per assignment; write ``out/similarity.html``. Returns it and the pairs.

    Submissions are found as ``cnnlab grade`` finds them (same intake: links, duplicates and
    unreadable files are skipped); each is read, never executed.
    """
    from cnnlab.grading.grade import load_assignments  # noqa: PLC0415
    from cnnlab.grading.pipeline.intake import find_submissions, read_submission  # noqa: PLC0415
    from cnnlab.grading.results.sheet import write_atomically  # noqa: PLC0415

    assignments = load_assignments(source)
    found = [s for s in find_submissions(inputs, set(assignments)) if not s.status and s.assignment in assignments]
    pairs, compared = [], {}
    for name in sorted({s.assignment for s in found}):
        assignment = assignments[name]
        read = []
        for sub in (s for s in found if s.assignment == name):
            nb, _ = read_submission(sub.path, assignment.nb, name)
            if nb is not None:
                read.append((sub.student, nb))
        docs, given = documents(read, assignment.nb, name)
        compared[name] = len(docs)
        pairs += compare(docs, given, threshold)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "similarity.html"
    write_atomically(page, render(sorted(pairs, key=lambda p: -p.score), compared, threshold))
    return page, pairs
