"""Verdicts on artefacts: thresholds judged on what the grader measures itself, never on the kernel's word.

A record of a number can be forged: a submission can rebind ``record``, or
send a record message from a thread with a hidden cell's parent header. An
exact value on inputs drawn at grading time stays safe (a forger does not
know it); a threshold (an accuracy of at least 0.95) does not. So a hidden
test that judges a threshold records the thing itself
(:func:`cnnlab.grading.record.record_artefact`): the kernel saves a Keras
model or an array in its own scratch and sends only the file's name. Then,
in this process:

1. :func:`fetch`, as soon as the test cell has run: the file is copied out of
   the kernel's scratch (inside its sandbox, through ``/proc/<pid>/root``),
   every path component opened without following links, regular files only,
   within a size cap;
2. :func:`measure_all`, after the notebook: every record whose value claims to
   be a measurement is marked forged; every artefact record is measured by
   :mod:`cnnlab.grading.pipeline.measure` in a fresh sandboxed process that runs no
   student code, with the task and parameters of the *source's* record, and
   its value becomes what was measured (or why nothing could be);
3. :func:`cnnlab.grading.record.matches` compares those measures with the
   source's bounds.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from cnnlab.grading.pipeline.restore import segment
from cnnlab.grading.record import ARTEFACTS, MIME, Comparison

__all__ = ["MAX_ARTEFACT_BYTES", "fetch", "measure_all"]

MAX_ARTEFACT_BYTES = 200 * 2**20
NAME = re.compile(r"^[0-9]{1,6}-[A-Za-z0-9_.-]{1,80}\.(keras|npy)$")


def _payloads(cell):
    """``(output, payload dict)`` of every record among a cell's outputs (JSON text decoded, depth-safe)."""
    for output in cell.get("outputs", []):
        data = output.get("data") if output.get("output_type") in ("display_data", "execute_result") else None
        if not isinstance(data, dict) or MIME not in data:
            continue
        payload = data[MIME]
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except (ValueError, RecursionError):
                continue
        if isinstance(payload, dict):
            yield output, payload


def _artefact_name(payload: dict) -> str | None:
    value = payload.get("value")
    if isinstance(value, dict) and value.get("kind") == "artefact" and isinstance(value.get("file"), str):
        return value["file"] if NAME.match(value["file"]) else None
    return None


def _open_folder(base: str, parts: tuple[str, ...]) -> int:
    """A descriptor of ``base/parts...``: ``base`` is the grader's own path; no part of ``parts`` may be a link."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for part in parts:
        try:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = inner
    return fd


def fetch(cell, base: str, parts: tuple[str, ...], dest: Path, budget: list[int]) -> None:
    """Copy the artefacts ``cell``'s records name from the kernel's folder ``base/parts/<ARTEFACTS>`` into ``dest``.

    ``budget`` holds the bytes still allowed for this submission (decremented). A file that is missing,
    a link, not regular, or over the cap is simply not copied: its record then measures as missing.
    """
    names = [name for _, payload in _payloads(cell) if (name := _artefact_name(payload))]
    if not names:
        return
    try:
        folder = _open_folder(base, (*parts, ARTEFACTS))
    except OSError:
        return
    try:
        for name in names:
            try:
                source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
            except OSError:
                continue
            try:
                info = os.fstat(source)
                if not stat.S_ISREG(info.st_mode) or info.st_size > min(MAX_ARTEFACT_BYTES, budget[0]):
                    continue
                budget[0] -= info.st_size
                dest.mkdir(parents=True, exist_ok=True)
                left = info.st_size  # what was charged: a file that keeps growing is cut there
                with os.fdopen(os.dup(source), "rb") as reader, open(dest / name, "wb") as writer:
                    while left > 0 and (chunk := reader.read(min(left, 2**20))):
                        writer.write(chunk)
                        left -= len(chunk)
            finally:
                os.close(source)
    finally:
        os.close(folder)


def measure_all(executed, compare_for: Callable[[str, str], Comparison | None], folder: Path,
                measure: Callable[[list[tuple[Path, str, dict]]], list[dict]]) -> None:  # fmt: skip
    """Replace, in place, every record value in ``executed``'s grade cells that only the grader may write.

    ``compare_for(grade_id, key)`` gives the source's comparison for a record (None: none);
    ``measure(jobs)`` runs :mod:`cnnlab.grading.pipeline.measure` once for all ``(path, task, params)``
    and returns one JSON answer per job (it raises when the grader itself fails). ``folder`` holds the
    fetched artefacts.
    """
    found = []  # (grade_id, output, payload, result or None, job index or None, params)
    jobs: list[tuple[Path, str, dict]] = []
    for cell in executed.cells:
        grade_id = segment(cell).get("grade_id")
        if not grade_id:
            continue
        for output, payload in list(_payloads(cell)):
            value = payload.get("value")
            kind = value.get("kind") if isinstance(value, dict) else None
            if kind not in ("artefact", "measures"):
                continue
            compare = compare_for(grade_id, str(payload.get("key")))
            result, job, params = None, None, {}
            if kind == "measures":  # only the grader writes measures: this one came from the kernel
                result = {"kind": "measures", "error": "a measurement sent by the notebook, not made by the grader"}
            elif compare is None or compare.kind != "artefact":
                result = {"kind": "measures", "error": "the source does not judge this record as an artefact"}
            else:
                name = _artefact_name(payload)
                path = folder / name if name else None
                if path is None or not path.is_file():
                    result = {"kind": "measures", "error": "the saved model or array never reached the grader"}
                else:
                    params = json.loads(compare.params or "{}")
                    job = len(jobs)
                    jobs.append((path, compare.task, {k: v for k, v in params.items() if k != "baseline"}))
            found.append((grade_id, output, payload, result, job, params))
    answers = measure(jobs) if jobs else []
    measured: dict[tuple[str, str], dict] = {}  # (grade_id, key) -> the measures taken (for baselines)
    for grade_id, output, payload, result, job, params in found:
        if result is None:
            answer = answers[job]
            result = {"kind": "measures", **({"data": answer["measures"]} if "measures" in answer
                                              else {"error": str(answer.get("error", "no answer"))[:300]})}  # fmt: skip
            result = _with_gain(result, measured.get((grade_id, str(params.get("baseline")))), params)
            if "data" in result:
                measured[(grade_id, str(payload.get("key")))] = result["data"]
        output["data"][MIME] = {**payload, "value": result}


def _with_gain(result: dict, baseline: dict | None, params: dict) -> dict:
    """``result`` with ``accuracy_gain`` over the artefact its parameters name as ``baseline``."""
    if "baseline" not in params or "data" not in result:
        return result
    if baseline is None or "accuracy" not in baseline:
        return {"kind": "measures", "error": f"its baseline {params['baseline']!r} was not measured before it"}
    return {**result, "data": {**result["data"], "accuracy_gain": result["data"]["accuracy"] - baseline["accuracy"]}}
