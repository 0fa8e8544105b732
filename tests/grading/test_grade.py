"""cnnlab grade end to end: the hostile corpus on a recording source and on a plain nbgrader one.

The corpus (tests/fixtures/submissions, built by tests/fixtures/build_fixtures.py) holds one
submission per attack; the tests add what git cannot store (a FIFO, links) and a course
repository whose .git holds the solutions, then grade it twice, with 2 workers: every case on the recording
source, and on the plain one every case but those settled by the sandbox alone (PLAIN_SKIPS).
"""

import csv
import html
import json
import os
import secrets
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import cnnlab
from cnnlab import cli
from cnnlab.grading import grade as grading
from cnnlab.grading.authoring.source import read_notebook
from cnnlab.grading.pipeline import kernels, sandbox
from cnnlab.grading.pipeline.execute import Execution, Limits
from cnnlab.grading.pipeline.restore import restore

FIXTURES = Path(__file__).parents[1] / "fixtures"
SOURCES = {"recorded": FIXTURES / "source", "plain": FIXTURES / "plain"}
SUBMISSIONS = FIXTURES / "submissions"
EXPECTED = json.loads((SUBMISSIONS / "expected.json").read_text())
INTAKE = {"symlinked_to_source": ["rejected", 0], "fifo": ["rejected", 0], "two_untitled": ["duplicate", None],
          # added by the course fixture: names git cannot hold, and one student's folders inside another's
          "p_j\\xf3zef": ["graded", 5], "long_name": ["graded", 5], "p_victim": ["graded", 5],
          "p_saboteur": ["duplicate", None]}
# Cases settled by the sandbox's limits and its view of the disk, whatever the source records: a cgroup or the
# watchdog stops them, or what they look for is not there. They are graded on the recording source only; on the
# plain one they would repeat ~80 s of kernel time (an infinite loop's timeout, a 30 GB allocation, reruns).
PLAIN_SKIPS = frozenset({"allocates_30gb", "fills_the_disk", "fork_bomb", "holds_memory_in_a_memfd", "infinite_loop",
                         "prints_100mb", "segfaults_in_every_task", "reads_git_objects",
                         "searches_disk_for_solutions"})  # fmt: skip
CASES = {"recorded": sorted(EXPECTED), "plain": sorted(set(EXPECTED) - PLAIN_SKIPS)}
LIMITS = ["--timeout", "20", "--notebook-timeout", "120", "--memory-mb", "1500", "--workers", "2", "--scratch-mb", "64"]
SECRET_ENV, SECRET_FILE = f"SECRET-ENV-{secrets.token_hex(8)}", f"SECRET-FILE-{secrets.token_hex(8)}"
pytestmark = pytest.mark.slow


def _grade(args, env=None):
    """Run ``cnnlab grade`` as a new process with extra environment; (exit code, stdout).

    A new process, so that the secrets are in its initial environment (``/proc/PID/environ``).
    """
    command = [str(Path(sys.executable).parent / "cnnlab"), "grade", *args]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=900)
    return done.returncode, done.stdout + done.stderr


def _rows(out: Path) -> dict[str, dict]:
    return {row["student"]: row for row in csv.DictReader((out / "grades.csv").open())}


def _submitted(submitted: Path, cases: list[str]) -> None:
    """``cases`` of the corpus, and the intake oddities (INTAKE), in ``submitted``."""
    for case in cases:
        shutil.copytree(SUBMISSIONS / case, submitted / case)
    (submitted / "symlinked_to_source").mkdir()
    os.symlink(FIXTURES / "source" / "conv_basics.ipynb", submitted / "symlinked_to_source" / "conv_basics.ipynb")
    (submitted / "fifo").mkdir()
    os.mkfifo(submitted / "fifo" / "conv_basics.ipynb")
    checkpoints = submitted / "untouched" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    shutil.copy(FIXTURES / "source" / "conv_basics.ipynb", checkpoints / "conv_basics-checkpoint.ipynb")
    (submitted / "untouched" / "notes.txt").write_text("not a notebook")
    (submitted / "two_untitled").mkdir()
    correct = SUBMISSIONS / "correct" / "conv_basics.ipynb"
    for name in ("Untitled.ipynb", "Untitled1.ipynb"):
        shutil.copy(correct, submitted / "two_untitled" / name)
    cp1252 = os.path.join(os.fsencode(submitted), b"p_j\xf3zef")  # a ZIP unpacked with CP-1252 names
    os.mkdir(cp1252)
    shutil.copy(correct, os.path.join(cp1252, b"conv_basics.ipynb"))
    (submitted / "long_name").mkdir()
    shutil.copy(correct, submitted / "long_name" / f"{'x' * 240}.ipynb")
    for student in ("p_victim", "p_saboteur"):
        (submitted / student / "conv_basics").mkdir(parents=True)
        shutil.copy(correct, submitted / student / "conv_basics" / "conv_basics.ipynb")
    for nested in ("p_victim", "p_ghost"):  # the saboteur's folders named after others: still the saboteur's
        (submitted / "p_saboteur" / "conv_basics" / nested).mkdir()
        shutil.copy(FIXTURES / "source" / "conv_basics.ipynb", submitted / "p_saboteur" / "conv_basics" / nested)
    os.symlink(submitted / "p_victim", submitted / "p_saboteur" / "data")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course folder: its .git holds the sources; submitted-{kind}/ hold CASES[kind] and the intake oddities."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(FIXTURES / "source", root / "source")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "source"], check=True)
    subprocess.run([*git, "commit", "-qm", "sources"], check=True)
    shutil.rmtree(root / "source")  # the solutions now exist only as .git objects
    for kind, cases in CASES.items():
        _submitted(root / f"submitted-{kind}", cases)
    home = root / "grader_home"
    home.mkdir()
    (home / "secret.txt").write_text(SECRET_FILE)
    return root


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    """{kind: (out folder, stdout)}: the whole corpus graded on each source, in the bubblewrap sandbox."""
    before = _fingerprint()
    results = {}
    for kind, source in SOURCES.items():
        out = tmp_path_factory.mktemp(f"grades-{kind}")
        (out / "grades.csv").write_text("sentinel")  # must be replaced by the grader, not by a submission
        code, stdout = _grade([str(course / f"submitted-{kind}"), "--source", str(source), "--out", str(out), "--seed", "11",
                               *LIMITS], env={"CNNLAB_TEST_SECRET": SECRET_ENV, "HOME": str(course / "grader_home")})  # fmt: skip
        assert code == 0, stdout
        results[kind] = (out, stdout)
    assert _fingerprint() == before, "a submission changed the Python environment"
    return results


def _fingerprint():
    """What a submission might write to persist: sitecustomize files and the cnnlab package."""
    package = Path(cnnlab.__file__).parent
    files = sorted(package.rglob("*.py"))
    return ([p for p in site.getsitepackages() if (Path(p) / "sitecustomize.py").exists()],
            [(str(f), f.stat().st_mtime_ns) for f in files])  # fmt: skip


@pytest.mark.parametrize("kind", SOURCES)
def test_every_case_gets_its_expected_status_and_score(graded, kind):
    rows = _rows(graded[kind][0])
    expected = {case: EXPECTED[case][kind] for case in CASES[kind]} | INTAKE
    assert set(rows) == set(expected)  # the checkpoint and notes.txt added no row
    got = {case: [rows[case]["status"], float(rows[case]["total"]) if rows[case]["total"] else None] for case in rows}
    wrong = {case: (got[case], want) for case, want in expected.items() if got[case] != want}
    assert not wrong, f"cases graded differently from tests/fixtures/submissions/expected.json: {wrong}"
    assert all(row["sandbox"] == "bwrap" for row in rows.values())


@pytest.mark.parametrize("kind", SOURCES)
def test_no_secret_and_no_hidden_code_reaches_a_student(graded, kind):
    out = graded[kind][0]
    texts = [p.read_text() for p in [out / "grades.csv", out / "grades.json", out / "class.html",
                                     *(out / "feedback").rglob("*.html")]]  # fmt: skip
    assert len(texts) == 3 + len(CASES[kind]) + len(INTAKE)
    for text in texts:
        assert SECRET_ENV not in text and SECRET_FILE not in text
        assert "grading_rng" not in text and "np.correlate" not in text and "HIDDEN TESTS" not in text
    page = _page(out, "exfiltrates_through_errors")
    assert "RuntimeError: nothing found" in page  # the attack ran, and found nothing


def _page(out, student):
    """The one feedback page of ``student``, in nbgrader's layout feedback/<student>/<assignment>/<notebook>.html."""
    (page,) = (out / "feedback" / student / "conv_basics").glob("*.html")
    return page.read_text()


def test_feedback_says_what_happened(graded):
    pages = {p.parent.parent.name: p.read_text() for p in (graded["recorded"][0] / "feedback").glob("*/conv_basics/*.html")}
    assert "hidden test 'conv1d_0': wrong value" in html.unescape(pages["fools_in_kernel_asserts"])
    assert "Because the kernel has to fit inside the signal." in pages["correct"]  # the written answer
    assert "output beyond 1,000,000 bytes was dropped" in pages["prints_100mb"]
    assert "no recorded values" not in pages["correct"]
    assert "the kernel used more than 1500 MiB" in pages["allocates_30gb"]
    assert "more than 64 processes" in pages["fork_bomb"]
    assert "symbolic link" in pages["symlinked_to_source"] and "named pipe" in pages["fifo"]
    assert "not yet graded" in pages["two_untitled"] and "Untitled.ipynb, Untitled1.ipynb" in pages["two_untitled"]
    plain = _page(graded["plain"][0], "correct")
    assert "no recorded values" in plain
    assert "more than 1500 MiB and was stopped (by the Linux kernel (a cgroup))" in pages["holds_memory_in_a_memfd"]
    assert "it quotes the hidden tests" in pages["echoes_hidden_code"]
    first = html.unescape(pages["os_exit_in_the_first_task"])
    assert "run 1: the kernel stopped (kernel-died) in the test 'test_conv1d'" in first
    assert "the kernel stopped (kernel-died) while this task ran: it scores 0" in first
    every = html.unescape(pages["segfaults_in_every_task"])
    assert "run 2: the kernel stopped (kernel-died) in the test 'test_output_length'" in every


@pytest.mark.parametrize("kind", SOURCES)
def test_every_row_has_its_own_feedback_page(graded, kind):
    out = graded[kind][0]
    rows = json.loads((out / "grades.json").read_text())["submissions"]
    pages = sorted((out / "feedback").rglob("*.html"))
    assert sorted(p.name for p in out.glob("*.html")) == ["class.html"]  # the class page; feedback is in feedback/
    assert len(pages) == len(rows) == len({(r["student"], r["assignment"]) for r in rows})
    assert all(len(p.name.encode()) <= 255 for p in pages)
    assert json.loads((out / "grades.json").read_text())["limits_enforced_by"] in ("cgroup", "watchdog")


def test_the_run_lists_test_cells_without_recorded_values(graded):
    assert "record no value" not in graded["recorded"][1]
    note = next(line for line in graded["plain"][1].splitlines() if "record no value" in line)
    assert "test_conv1d" in note and "test_output_length" in note


def test_a_submission_cannot_write_the_grade_sheet(graded):
    text = (graded["recorded"][0] / "grades.csv").read_text()
    assert "hacked" not in text and "100" not in text.split("writes_fake_grades_csv")[1].splitlines()[0]


def test_without_the_sandbox_the_same_attacks_succeed(course, tmp_path):
    """The attacks are real: unsandboxed, they find the solutions and the grader's secrets."""
    attacks = tmp_path / "attacks"
    for case in ("searches_disk_for_solutions", "reads_git_objects", "exfiltrates_through_errors"):
        shutil.copytree(SUBMISSIONS / case, attacks / case)
    code, stdout = _grade([str(attacks), "--source", str(FIXTURES / "source"), "--out", str(tmp_path / "out"),
                           "--sandbox", "none", "--timeout", "60", "--workers", "2"],
                          env={"CNNLAB_TEST_SECRET": SECRET_ENV, "HOME": str(course / "grader_home")})  # fmt: skip
    assert code == 0 and stdout.count("warning: --sandbox none") == 1
    rows = _rows(tmp_path / "out")
    assert rows["searches_disk_for_solutions"]["total"] == "5"
    assert rows["reads_git_objects"]["total"] == "5"
    assert all(row["sandbox"] == "none" for row in rows.values())
    page = _page(tmp_path / "out", "exfiltrates_through_errors")
    assert SECRET_ENV in page and SECRET_FILE in page


def test_the_tampering_case_really_fools_every_in_kernel_check(tmp_path):
    """Run outside the grader, every test cell of that submission passes: only the records catch it."""
    nb = restore(read_notebook(SOURCES["recorded"] / "conv_basics.ipynb"),
                 read_notebook(SUBMISSIONS / "fools_in_kernel_asserts" / "conv_basics.ipynb"))  # fmt: skip
    NotebookClient(nb, timeout=60, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    errors = [c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert errors == []


def _two(tmp_path) -> Path:
    folder = tmp_path / "two"
    for case in ("correct", "partly_correct"):
        shutil.copytree(SUBMISSIONS / case, folder / case)
    return folder


def test_a_kernel_that_cannot_start_is_not_a_zero_and_can_be_graded_again(tmp_path, monkeypatch):
    real = kernels.execute

    def failing_for_partly_correct(nb, *args, **kwargs):
        if any("ignores padding" in cell.source for cell in nb.cells):
            return Execution(status="not-started", detail="simulated: the kernel could not start")
        return real(nb, *args, **kwargs)

    folder, out = _two(tmp_path), tmp_path / "out"
    run = grading.GradeRun(source=SOURCES["recorded"], out=out, seed=5, workers=2, progress=False,
                           limits=Limits(cell_seconds=20, scratch_mb=64))  # fmt: skip
    monkeypatch.setattr(kernels, "execute", failing_for_partly_correct)
    grading.grade([folder], run)
    rows = _rows(out)
    assert (rows["correct"]["status"], rows["correct"]["total"]) == ("graded", "5")
    assert (rows["partly_correct"]["status"], rows["partly_correct"]["total"]) == ("not-gradable", "")
    assert "simulated" in (out / "grades.json").read_text()
    first = json.loads((out / "grades.json").read_text())["submissions"][0]

    monkeypatch.setattr(kernels, "execute", real)
    assert cli.main(["grade", str(folder), "--source", str(SOURCES["recorded"]), "--out", str(out),
                     "--only-not-gradable", "--workers", "2"]) == 0  # fmt: skip
    rows = _rows(out)
    assert (rows["partly_correct"]["status"], rows["partly_correct"]["total"]) == ("graded", "3")
    assert json.loads((out / "grades.json").read_text())["submissions"][0] == first  # untouched, not re-run


def test_a_source_that_cannot_run_makes_its_rows_not_gradable(tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "execute", lambda *a, **k: Execution(status="not-started", detail="no kernel"))
    grading.grade([_two(tmp_path)], grading.GradeRun(source=SOURCES["recorded"], out=tmp_path / "out", seed=1,
                                                     progress=False))  # fmt: skip
    rows = _rows(tmp_path / "out")
    assert {r["status"] for r in rows.values()} == {"not-gradable"} and {r["total"] for r in rows.values()} == {""}
    assert "the source could not be run" in (tmp_path / "out" / "grades.json").read_text()


def test_without_a_working_sandbox_it_refuses(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.probe.cache_clear()
    try:
        code = cli.main(["grade", str(SUBMISSIONS / "correct"), "--source", str(SOURCES["recorded"]),
                         "--out", str(tmp_path / "out")])  # fmt: skip
    finally:
        sandbox.probe.cache_clear()
    err = capsys.readouterr().err
    assert code == 2 and "refusing to grade" in err and "apt-get install bubblewrap" in err and "--sandbox none" in err
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_unsandboxed_only_when_asked_and_recorded(tmp_path):
    code, stdout = _grade([str(SUBMISSIONS / "warns_on_stderr"), "--source", str(SOURCES["recorded"]),
                           "--out", str(tmp_path), "--sandbox", "none"])  # fmt: skip
    assert code == 0 and stdout.count("warning: --sandbox none") == 1
    row = next(iter(_rows(tmp_path).values()))
    assert (row["status"], row["total"], row["sandbox"]) == ("graded", "5", "none")  # stderr does not zero a cell
    assert json.loads((tmp_path / "grades.json").read_text())["sandbox"] == "none"


def test_a_batch_with_two_workers_grades_every_row(tmp_path):
    """Eight copies of the correct submission, two kernels at a time: every one 5/5 (throughput is
    benchmarks/bench_grading.py's to measure, not a test's)."""
    batch = tmp_path / "batch"
    for i in range(8):
        shutil.copytree(SUBMISSIONS / "correct", batch / f"student{i:02d}")
    code, _ = _grade([str(batch), "--source", str(SOURCES["recorded"]), "--out", str(tmp_path / "out"), *LIMITS])
    rows = list(_rows(tmp_path / "out").values())
    assert code == 0 and len(rows) == 8 and all(r["status"] == "graded" and r["total"] == "5" for r in rows)


def test_bad_source_directory_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["grade", str(SUBMISSIONS / "correct"), "--source", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert code == 1 and "is not a directory" in capsys.readouterr().err


def test_the_watchdog_thread_can_be_joined():
    from cnnlab.grading.pipeline.execute import _Watchdog

    dog = _Watchdog(os.getpid(), Limits(memory_mb=10**6, notebook_seconds=10**6, processes=10**6), time.monotonic())
    dog.start()
    time.sleep(0.3)
    dog.finish()
    assert not dog.is_alive() and dog.reason is None and dog.peak > 0


def test_restored_nbformat_is_valid():
    nb = restore(read_notebook(SOURCES["plain"] / "conv_basics.ipynb"),
                 read_notebook(SUBMISSIONS / "correct" / "conv_basics.ipynb"))  # fmt: skip
    nbformat.validate(nb)


def test_one_students_folder_merges_into_the_class_sheet(tmp_path):
    """``cnnlab grade submitted/<student>`` grades that student under their own name and keeps every other row."""
    folder, out = _two(tmp_path), tmp_path / "out"
    args = ["--source", str(SOURCES["recorded"]), "--out", str(out), "--workers", "2", "--timeout", "20"]
    assert cli.main(["grade", str(folder), *args]) == 0
    before = _rows(out)
    assert cli.main(["grade", str(folder / "partly_correct"), *args]) == 0
    after = _rows(out)
    assert set(after) == {"correct", "partly_correct"} and after["correct"] == before["correct"]
    assert (after["partly_correct"]["status"], after["partly_correct"]["total"]) == ("graded", "3")
    assert sorted(p.parent.parent.name for p in (out / "feedback").rglob("*.html")) == ["correct", "partly_correct"]


def test_a_folder_that_cannot_take_the_run_is_refused_before_any_kernel(tmp_path, capsys):
    folder, out = _two(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "marks.json").write_text("{ not json")
    args = [str(folder), "--source", str(SOURCES["recorded"]), "--out", str(out)]
    assert cli.main(["grade", *args]) == 1 and "marks.json" in capsys.readouterr().err
    (out / "marks.json").unlink()
    (out / "grades.json").write_text(json.dumps({"seed": 1, "sandbox": "bwrap", "source": "/elsewhere",
                                                 "submissions": []}))  # fmt: skip
    assert cli.main(["grade", *args]) == 1 and "its sources were /elsewhere" in capsys.readouterr().err
    assert cli.main(["grade", *args[:-1], str(tmp_path / "out" / "grades.json")]) == 1
    assert "is a file" in capsys.readouterr().err
    assert not (out / "grades.csv").exists()


def test_an_interrupted_run_keeps_its_finished_rows_and_resumes(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or a crash) after one row: that row is in the journal, and the same command grades only the rest."""
    from cnnlab.grading.pipeline import submission as pipeline  # noqa: PLC0415

    folder, out = _two(tmp_path), tmp_path / "out"
    real, calls = grading.grade_one, []

    def interrupted_after_one(sub, *args):
        calls.append(sub.student)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(sub, *args)

    monkeypatch.setattr(grading, "grade_one", interrupted_after_one)
    args = ["grade", str(folder), "--source", str(SOURCES["recorded"]), "--out", str(out), "--workers", "1",
            "--seed", "4", "--timeout", "20"]  # fmt: skip
    assert cli.main(args) == 130 and "run the same command again" in capsys.readouterr().err
    journal = (out / "grades.journal.jsonl").read_text().splitlines()
    assert len(journal) == 2 and not (out / "grades.csv").exists()  # the header and the one finished row
    first = calls[0]

    monkeypatch.setattr(grading, "grade_one", lambda sub, *a: calls.append(sub.student) or pipeline.grade_one(sub, *a))
    assert cli.main(args) == 0 and "resuming an interrupted run: 1 of 2" in capsys.readouterr().out
    assert calls[2:] == [s for s in ("correct", "partly_correct") if s != first]  # the finished row was not re-run
    rows = _rows(out)
    assert (rows["correct"]["total"], rows["partly_correct"]["total"]) == ("5", "3")
    assert not (out / "grades.journal.jsonl").exists()


def test_the_class_page_of_a_run_names_what_could_not_be_graded(graded):
    out = graded["recorded"][0]
    page = (out / "class.html").read_text()
    rows = page.split("Not graded, rejected or invalid", 1)[1]
    for student in ("symlinked_to_source", "fifo", "two_untitled", "p_saboteur"):
        assert f"<td>{student}</td>" in rows
    assert page.count("<svg") >= 4 and "Most common failure messages" in page and "No task failed." not in page
    assert SECRET_ENV not in page and "np.correlate" not in page  # failure messages keep hidden code withheld
