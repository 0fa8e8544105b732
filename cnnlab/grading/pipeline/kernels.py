"""The kernel pool that ``cnnlab grade``, its Dask workers and ``cnnlab validate`` share.

Each concurrent kernel has a slot: one of the kernel uids claimed for this
grader (:func:`cnnlab.grading.pipeline.sandbox.kernel_uids`), or ``None`` where the
grader is not root. A run takes a slot, writes a kernelspec that starts the
kernel inside the sandbox, executes the notebook
(:func:`cnnlab.grading.pipeline.execute.execute`) and gives the slot back.

What is the student's and what is the grader's: a kernel that does not start,
a full disk, or an exception inside the grader while the notebook runs is the
grader's failure (:class:`KernelFailure`, a ``not-gradable`` row), never a
zero. Only a kernel that died, or a limit the watchdog or the cgroup
enforced, becomes a student's status.
"""

from __future__ import annotations

import contextlib
import copy
import json
import queue
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnlab.grading.pipeline.cgroups import KernelCgroup
from cnnlab.grading.pipeline.execute import GRADER_ERROR, Execution, Limits, execute
from cnnlab.grading.pipeline.measure import STARTED
from cnnlab.grading.pipeline.sandbox import KERNEL_NAME, Sandbox, kernel_environment, write_kernelspec

__all__ = ["KernelFailure", "Kernels"]


class KernelFailure(RuntimeError):
    """The grader could not run a kernel (no start, no disk, its own bug): never the student's fault."""


class Kernels:
    """Runs notebooks in fresh sandboxed kernels, one per slot at a time."""

    def __init__(self, sandbox: Sandbox, limits: Limits, seed: int, root: Path,
                 uids: list[int | None] | queue.Queue):  # fmt: skip
        """``uids``: the slots, or a queue of them shared with other instances (a Dask worker's, across runs).

        ``root`` is where each kernel's scratch folder is made (mode 0711: kernels reach their own only).
        """
        self.sandbox, self.limits, self.seed, self.root = sandbox, limits, seed, root
        if isinstance(uids, queue.Queue):
            self.free = uids
        else:
            self.free = queue.Queue()
            for uid in uids:
                self.free.put(uid)

    def run(self, nb, artefacts: Path | None = None) -> tuple[object, Execution]:
        """``(executed notebook, execution)``; raises :class:`KernelFailure` when no kernel could run it.

        ``artefacts``: where the files its records name are copied (:mod:`cnnlab.grading.pipeline.artefacts`).

        A kernel that does not start is tried once more: its failure is the machine's
        (a loaded host, a slot still being cleared), never anything the submission did.
        """
        try:
            return self._run_once(nb, artefacts)
        except KernelFailure as error:
            if getattr(error, "started", False):
                raise
            return self._run_once(nb, artefacts)

    @contextlib.contextmanager
    def _slot(self, prefix: str, what: str):
        """``(uid, scratch folder with ipc/ and work/, cgroup or None)`` for one sandboxed process; all given
        back afterwards. An ``OSError`` while it is held becomes :class:`KernelFailure` naming ``what``."""
        uid = self.free.get()
        scratch = group = None
        try:
            scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))
            for folder in ("ipc", "work"):
                (scratch / folder).mkdir()
            # Tasks: the process's own threads (RLIMIT_NPROC per uid) and the sandbox's few processes.
            group = KernelCgroup.create(self.limits.memory_mb, self.limits.threads + 16)
            yield uid, scratch, group
        except OSError as error:
            raise KernelFailure(f"the grader could not {what} ({error.strerror or error})") from None
        finally:
            if group is not None:
                group.remove()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            self.free.put(uid)

    def _run_once(self, nb, artefacts: Path | None) -> tuple[object, Execution]:
        with self._slot("k", "prepare a kernel") as (uid, scratch, group):
            kernels, ipc, work = scratch / "kernels", scratch / "ipc", scratch / "work"
            write_kernelspec(kernels, ipc, self.sandbox, self.seed, uid, work, cgroup=group)
            executed = copy.deepcopy(nb)
            execution = execute(executed, kernels, KERNEL_NAME, work, ipc, self.limits, cgroup=group,
                                lock_ipc=self.sandbox.enabled and uid is not None, artefacts=artefacts,
                                sandboxed=self.sandbox.enabled)  # fmt: skip
        if execution.status == "not-started":
            raise KernelFailure(f"the kernel did not start ({execution.detail[:300] or 'no reason given'})")
        if execution.status == GRADER_ERROR:
            failure = KernelFailure(f"the grader failed while the notebook ran ({execution.detail[:300]})")
            failure.started = True  # the same notebook again would meet the same failure: not retried here
            raise failure
        return executed, execution

    def measure(self, jobs: list[tuple[Path, str, dict]]) -> list[dict]:
        """Measure artefacts ``(path, task, params)`` with :mod:`cnnlab.grading.pipeline.measure`, all in one fresh
        sandboxed process (a slot's uid, a cgroup, the kernel's limits) that runs no student code: one JSON
        answer per job, ``{"measures": ...}`` or ``{"error": ...}``. A job that crashes the process is that
        artefact's error; the jobs after it are measured in a new process. Raises :class:`KernelFailure`
        when the grader could not run it at all."""
        answers: list[dict] = []
        while len(answers) < len(jobs):
            answers += self._measure_once(jobs[len(answers):])
        return answers

    def _measure_once(self, jobs: list[tuple[Path, str, dict]]) -> list[dict]:
        """Answers for a prefix of ``jobs`` (at least one): as many as the process gave, then the crash's."""
        with self._slot("m", "measure an artefact") as (uid, scratch, group):
            ipc, work, held = scratch / "ipc", scratch / "work", scratch / "artefacts"
            held.mkdir()
            held.chmod(0o755)
            listed = []
            for index, (artefact, task, params) in enumerate(jobs):
                copy_ = held / f"{index}-{artefact.name}"
                shutil.copyfile(artefact, copy_)
                copy_.chmod(0o644)
                listed.append({"artefact": str(copy_), "task": task, "params": params})
            (held / "jobs.json").write_text(json.dumps(listed))
            (held / "jobs.json").chmod(0o644)
            argv = [sys.executable, str(Path(__file__).with_name("measure.py")), str(held / "jobs.json")]
            env = kernel_environment(self.seed, self.sandbox.enabled, work)
            command = self.sandbox.wrap(argv, ipc, uid, env, readonly=(held,))
            if group is not None:
                command = group.wrap(command)
            seconds = max(60.0, self.limits.cell_seconds) * len(jobs)
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=seconds, cwd=work)
                stdout, returncode, stderr = done.stdout, done.returncode, done.stderr
            except subprocess.TimeoutExpired as expired:
                stdout = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
                returncode, stderr = "timeout", ""
            answers = _answers(stdout, len(jobs))
            if len(answers) == len(jobs):
                return answers
            if STARTED not in stdout.splitlines():
                raise KernelFailure(f"the grader's measurement did not run (exit {returncode}: "
                                    f"{(stderr.strip().splitlines() or ['no message'])[-1][:300]})")  # fmt: skip
            if returncode == "timeout":
                why = "measuring it took longer than the time a cell may take"
            elif group is not None and group.oom_killed():
                why = f"measuring it needed more than {self.limits.memory_mb} MiB"
            else:
                why = f"measuring it crashed the measuring process (exit {returncode})"
            return [*answers, {"error": why}]


def _answers(stdout: str, count: int) -> list[dict]:
    """The answers :mod:`cnnlab.grading.pipeline.measure` printed, in job order, up to the first one missing."""
    found: dict[int, dict] = {}
    for line in stdout.splitlines():
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict) and isinstance(answer.get("job"), int) and ("measures" in answer or "error" in answer):
            found.setdefault(answer.pop("job"), answer)
    answers = []
    while len(answers) < count and len(answers) in found:
        answers.append(found[len(answers)])
    return answers
