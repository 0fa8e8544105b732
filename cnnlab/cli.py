"""The ``cnnlab`` command.

cnnlab doctor       what this machine has, and what is broken
cnnlab build-ops    build the custom convolution op ahead of time
cnnlab pretrain     train (or find) the networks notebooks 05 and 06 start from
cnnlab assign       generate student versions from the assignment sources
cnnlab grade        grade submissions
cnnlab validate     check an assignment before submitting it, as the grader will run it
cnnlab similarity   which students' answers are alike, side by side (never a verdict)
cnnlab marks        the marking sheet of written answers as CSV: export, import
cnnlab export       the grade sheet as a Canvas or Moodle gradebook import
cnnlab refresh      re-execute notebooks and store their outputs
cnnlab configure-lab  the course's JupyterLab settings (no news prompt, no nbgrader instructor tools)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _doctor(_args: argparse.Namespace) -> int:
    from cnnlab import doctor  # noqa: PLC0415

    return doctor.main()


def _configure_lab(_args: argparse.Namespace) -> int:
    from cnnlab.labconfig import configure  # noqa: PLC0415

    for path in configure():
        print(f"JupyterLab settings: {path}")
    return 0


def _build_ops(args: argparse.Namespace) -> int:
    from cnnlab.ops import build  # noqa: PLC0415

    try:
        path = build.build(force=args.force, gpu=args.gpu)
    except build.BuildError as error:
        print(f"cnnlab build-ops: {error}", file=sys.stderr)
        return 1
    print(f"custom op ready: {path}")
    return 0


def _pretrain(_args: argparse.Namespace) -> int:
    # The grader's sandbox can read the model cache but not write to it: without
    # this step every graded submission of assignments 05 and 06 would retrain them.
    from cnnlab import models  # noqa: PLC0415

    for name, load in (("MNIST convnet (assignment 05)", models.load_or_train_mnist_convnet),
                       ("digit base, digits 0-4 (assignment 06)", models.pretrained_digit_base)):  # fmt: skip
        print(f"{name}: {load(quiet=True).count_params():,} parameters, cached in {models.model_cache_dir()}",
              flush=True)  # fmt: skip
    return 0


def _assign(args: argparse.Namespace) -> int:
    from cnnlab.grading.authoring import assign  # noqa: PLC0415
    from cnnlab.grading.authoring.source import SourceError  # noqa: PLC0415

    try:
        if args.check:
            result = assign.check(args.source_dir, args.out_dir)
            for line in result.rubrics:
                print(f"warning: {line}", file=sys.stderr)
            for line in result.warnings:
                print(f"{'warning' if args.allow_unrecorded else 'error'}: {line}", file=sys.stderr)
            if result.warnings and not args.allow_unrecorded:
                print("test cells that record no value can be forged by a submission: make them record() their "
                      "values, or pass --allow-unrecorded for a plain nbgrader source", file=sys.stderr)  # fmt: skip
                return 1
            stale = result.stale
            for line in stale:
                print(line)
            if stale:
                print(f"{len(stale)} student version(s) out of date: run `cnnlab assign`", file=sys.stderr)
                return 1
            print(f"{args.out_dir} is in sync with {args.source_dir}")
            return 0
        if args.roster is not None:
            return _assign_per_student(args)
        result = assign.assign(args.source_dir, args.out_dir)
        for line in [*result.warnings, *result.rubrics]:
            print(f"warning: {line}", file=sys.stderr)
        written = result.written
    except (SourceError, FileNotFoundError) as error:
        print(f"cnnlab assign: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} student version(s) into {args.out_dir}")
    return 0


def _secret(path: Path | None) -> bytes | None:
    from cnnlab.grading.authoring import variants  # noqa: PLC0415

    return None if path is None else variants.read_secret(path)


def _assign_per_student(args: argparse.Namespace) -> int:
    from cnnlab.grading.authoring import assign, variants  # noqa: PLC0415

    if args.secret is None:
        raise variants.VariantError("--roster needs --secret FILE: the course secret each student's values are "
                                    "drawn with (a new one is written there if the file does not exist)")  # fmt: skip
    out = args.out_dir if args.out_dir != Path("exercises") else Path("release")
    students = variants.read_roster(args.roster, args.roster_column)
    if args.secret.exists():
        secret = variants.read_secret(args.secret)
    else:
        secret = variants.new_secret(args.secret)
        print(f"wrote a new course secret to {args.secret}: keep it (grading needs it) and never release it")
    result = assign.assign_per_student(args.source_dir, out, students, secret)
    for line in [*result.warnings, *result.rubrics]:
        print(f"warning: {line}", file=sys.stderr)
    print(f"wrote {len(result.written)} notebooks for {len(students)} students into {out}/<student>/<assignment>/; "
          "release each student's folder to that student only")  # fmt: skip
    return 0


def _grade(args: argparse.Namespace) -> int:
    from cnnlab.grading.authoring.source import SourceError  # noqa: PLC0415
    from cnnlab.grading.grade import GradeRun, Interrupted, grade  # noqa: PLC0415
    from cnnlab.grading.pipeline.execute import Limits  # noqa: PLC0415
    from cnnlab.grading.pipeline.sandbox import SandboxUnavailable  # noqa: PLC0415
    from cnnlab.grading.results.late import LatePolicy, parse_duration, parse_time  # noqa: PLC0415

    try:
        policy = None
        if args.due is not None:
            policy = LatePolicy(parse_time(args.due, "--due"), args.late_penalty, args.late_unit, args.late_cap,
                                parse_duration(args.grace, "--grace"))  # fmt: skip
        elif args.late_penalty_given:
            raise ValueError("--late-penalty, --late-cap and --grace need --due")
    except ValueError as error:
        print(f"cnnlab grade: {error}", file=sys.stderr)
        return 1
    limits = Limits(cell_seconds=args.timeout, notebook_seconds=args.notebook_timeout, memory_mb=args.memory_mb,
                    output_bytes=args.max_output, processes=args.max_processes, scratch_mb=args.scratch_mb)  # fmt: skip
    tls = (args.tls_ca_file, args.tls_cert, args.tls_key)
    if any(tls) and not all(tls):
        print("cnnlab grade: --tls-ca-file, --tls-cert and --tls-key go together", file=sys.stderr)
        return 1
    try:
        results = grade(args.submissions, GradeRun(
            source=args.source, out=args.out, limits=limits, workers=args.workers, seed=args.seed,
            sandbox=args.sandbox, only_not_gradable=args.only_not_gradable, late_policy=policy,
            scheduler=args.scheduler, insecure=args.insecure, tls=tls if all(tls) else None,
            kernel_uids=args.kernel_uids, secret=_secret(args.secret)))  # fmt: skip
    except Interrupted as error:
        print(f"cnnlab grade: {error}", file=sys.stderr)
        return 130
    except SandboxUnavailable as error:
        print(f"cnnlab grade: refusing to grade: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # cluster.ClusterUnavailable, without importing distributed here
        if type(error).__name__ != "ClusterUnavailable":
            raise
        print(f"cnnlab grade: {error}", file=sys.stderr)
        return 2
    except (SourceError, FileNotFoundError, ValueError) as error:
        print(f"cnnlab grade: {error}", file=sys.stderr)
        return 1
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    print(f"the sheet holds {len(results)} row(s) ({summary}) -> {args.out}/grades.csv")
    if statuses.get("not-gradable"):
        print(f"{statuses['not-gradable']} could not be graded (see their notes); once fixed, run the same command "
              "with --only-not-gradable to grade just those")  # fmt: skip
    return 0


def _similarity(args: argparse.Namespace) -> int:
    from cnnlab.grading.authoring.source import SourceError  # noqa: PLC0415
    from cnnlab.grading.results.similarity import similarity_report  # noqa: PLC0415

    try:
        page, pairs = similarity_report(args.submissions, args.source, args.out, args.threshold)
    except (SourceError, FileNotFoundError, ValueError) as error:
        print(f"cnnlab similarity: {error}", file=sys.stderr)
        return 1
    print(f"{len(pairs)} pair(s) at or above {args.threshold:.0%}: {page}")
    return 0


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], e.g. 0.5; got {text}")
    return value


def _validate(args: argparse.Namespace) -> int:
    from cnnlab.grading.authoring.source import SourceError  # noqa: PLC0415
    from cnnlab.grading.pipeline.execute import Limits  # noqa: PLC0415
    from cnnlab.grading.validate import validate_notebook  # noqa: PLC0415

    limits = Limits(cell_seconds=args.timeout, notebook_seconds=args.notebook_timeout)
    broken = 0
    for path in args.notebooks:
        print(f"{path}: running it as the grader will (a fresh kernel, the visible tests, "
              f"{limits.cell_seconds:g} s per cell, {limits.notebook_seconds:g} s in all) ...", flush=True)  # fmt: skip
        try:
            checks = validate_notebook(path, limits)
        except (SourceError, FileNotFoundError) as error:
            print(f"cnnlab validate: {error}", file=sys.stderr)
            broken += 1
            continue
        width = max(len(c.title) for c in checks)
        for check in checks:
            detail = f": {check.message}" if check.message else ""
            print(f"  {check.title:<{width}}  {check.verdict}{detail}")
        done = sum(c.ok for c in checks)
        print(f"{done} of {len(checks)} tasks pass their visible tests or are answered; hidden tests run when "
              "it is graded, and written answers are marked by a person")  # fmt: skip
        broken += done < len(checks)
    return 1 if broken else 0


def _marks(args: argparse.Namespace) -> int:
    from cnnlab.grading.results import marks  # noqa: PLC0415

    try:
        if args.action == "export":
            text = marks.export_csv(args.out)
            if args.file is None:
                sys.stdout.write(text)
            else:
                args.file.write_text(text, encoding="utf-8")
                print(f"wrote the marking sheet of {args.out} to {args.file}")
            return 0
        if args.file is None:
            print("cnnlab marks import: give the filled-in sheet: cnnlab marks import GRADES SHEET.csv", file=sys.stderr)
            return 1
        count = marks.import_csv(args.out, args.file.read_text(encoding="utf-8-sig"))
    except (FileNotFoundError, ValueError) as error:
        print(f"cnnlab marks {args.action}: {error}", file=sys.stderr)
        return 1
    print(f"imported {count} mark(s) into {args.out}; grades.csv, grades.json and the feedback pages are updated")
    return 0


def _export(args: argparse.Namespace) -> int:
    from cnnlab.grading.results import export  # noqa: PLC0415

    try:
        done = export.export(args.out, args.roster.read_text(encoding="utf-8-sig"), args.format, args.match_column,
                             export.parse_columns(args.column))  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        print(f"cnnlab export: {error}", file=sys.stderr)
        return 1
    args.to.write_text(done.text, encoding="utf-8")
    print(f"wrote {done.rows} student(s) to {args.to} ({args.format} gradebook import, scores after late penalties)")
    for title, names in (("graded but not on the roster (not exported)", done.unmatched),
                         ("left empty", done.missing), ("written answers not marked yet", done.pending)):  # fmt: skip
        if names:
            print(f"{len(names)} {title}: {', '.join(names)}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from cnnlab.notebooks import refresh  # noqa: PLC0415

    for path in args.notebooks:
        if not path.is_file():
            print(f"cnnlab refresh: {path} does not exist", file=sys.stderr)
            return 1
        print(f"{path}: {refresh(path):.1f} s", flush=True)
    return 0


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cnnlab", description="cnnlab: coursework on convolutional neural networks"
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    doctor = commands.add_parser("doctor", help="check Python, TensorFlow, compilers, data and the custom op")
    doctor.set_defaults(run=_doctor)

    build_ops = commands.add_parser("build-ops", help="compile the custom convolution op into the cache")
    build_ops.add_argument("--force", action="store_true", help="rebuild even when the cache holds a build")
    build_ops.add_argument(
        "--gpu",
        choices=["auto", "yes", "no"],
        default="auto",
        help="build the CUDA kernels: auto (when nvcc and a CUDA build of TensorFlow are present), yes, no",
    )
    build_ops.set_defaults(run=_build_ops)

    pretrain = commands.add_parser(
        "pretrain", help="train (or find) the cached networks notebooks 05 and 06 start from"
    )
    pretrain.set_defaults(run=_pretrain)

    assign = commands.add_parser("assign", help="generate student versions from the assignment sources")
    assign.add_argument("source_dir", nargs="?", type=Path, default=Path("solutions"))
    assign.add_argument("out_dir", nargs="?", type=Path, default=Path("exercises"))
    assign.add_argument("--check", action="store_true",
                        help="exit non-zero if out_dir is out of date, or a test cell records no value")  # fmt: skip
    assign.add_argument("--allow-unrecorded", action="store_true",
                        help="with --check: only warn about test cells that record no value (plain nbgrader sources)")  # fmt: skip
    assign.add_argument("--roster", type=Path, default=None,
                        help="one student per line (or a CSV with a 'student' column): write each student a copy "
                             "with their own variant values into out_dir/<student>/<assignment>/ (default release/)")  # fmt: skip
    assign.add_argument("--roster-column", default="student", help="the roster CSV's column of student names")
    assign.add_argument("--secret", type=Path, default=None,
                        help="with --roster: the course secret file (made if missing); grade with the same file")  # fmt: skip
    assign.set_defaults(run=_assign)

    grade = commands.add_parser("grade", help="grade submissions (notebooks or nbgrader submitted/ folders)")
    grade.add_argument("submissions", nargs="+", type=Path, help="notebooks or folders of notebooks")
    grade.add_argument(
        "--source", type=Path, default=Path("solutions"), help="assignment sources (solutions/)"
    )
    grade.add_argument("--out", type=Path, default=Path("grades"), help="where grades and feedback go")
    grade.add_argument(
        "--workers", type=_positive(int), default=os.cpu_count() or 1, help="kernels side by side"
    )
    grade.add_argument("--timeout", type=_positive(float), default=60.0, help="seconds per cell (default 60)")
    grade.add_argument("--notebook-timeout", type=_positive(float), default=300.0,
                       help="seconds per notebook (default 300)")  # fmt: skip
    grade.add_argument("--memory-mb", type=_positive(int), default=4096, help="memory ceiling per kernel")
    grade.add_argument(
        "--max-output", type=_positive(int), default=1_000_000, help="output bytes kept per notebook"
    )
    grade.add_argument("--seed", type=int, default=None, help="seed of hidden-test inputs (default: random)")
    grade.add_argument("--max-processes", type=_positive(int), default=64, help="processes per kernel (default 64)")
    grade.add_argument("--scratch-mb", type=_positive(int), default=512,
                       help="writable scratch space per kernel, MiB (default 512)")  # fmt: skip
    grade.add_argument("--sandbox", choices=["bwrap", "none"], default="bwrap",
                       help="bwrap (default; refuses to grade if bubblewrap does not work) or none (no isolation, "
                            "recorded in the grade sheet)")  # fmt: skip
    grade.add_argument("--only-not-gradable", action="store_true",
                       help="grade again only the rows an earlier run into --out marked not-gradable")  # fmt: skip
    grade.add_argument("--scheduler", default=None, metavar="tls://HOST:PORT",
                       help="grade on the workers of this Dask scheduler (each in its own sandbox) instead of here")  # fmt: skip
    grade.add_argument("--insecure", action="store_true",
                       help="allow a plain tcp:// scheduler, unauthenticated (grades.json records it)")  # fmt: skip
    grade.add_argument("--tls-ca-file", default=None, help="CA certificate of the cluster (with --tls-cert, --tls-key)")
    grade.add_argument("--tls-cert", default=None, help="this grader's certificate for a tls:// scheduler")
    grade.add_argument("--tls-key", default=None, help="this grader's private key for a tls:// scheduler")
    grade.add_argument("--secret", type=Path, default=None,
                       help="the course secret file `cnnlab assign --roster` used: each student is graded with their "
                            "own variant values (default: every student with the source's values)")  # fmt: skip
    grade.add_argument("--kernel-uids", default=None, metavar="START-END",
                       help="uids kernels run as when grading as root (default 60578-61183, or $CNNLAB_KERNEL_UIDS)")  # fmt: skip
    late = grade.add_argument_group("deadline and late penalty (the time comes from nbgrader's timestamp.txt)")
    late.add_argument("--due", help="due date and time, e.g. 2026-12-01T23:59+01:00 (no zone: UTC)")
    late.add_argument("--late-penalty", type=float, default=None,
                      help="percent of the earned points taken per started --late-unit after --due (default 10)")  # fmt: skip
    late.add_argument("--late-unit", choices=["day", "hour"], default="day")
    late.add_argument("--late-cap", type=float, default=None, help="largest total penalty in percent (default 100)")
    late.add_argument("--grace", default=None, help="time after --due still on time, e.g. 15m, 2h (default 0)")
    grade.set_defaults(run=_grade)

    similar = commands.add_parser("similarity", help="which students' answers are alike, side by side (never a verdict)")
    similar.add_argument("submissions", nargs="+", type=Path, help="notebooks or folders (as cnnlab grade takes them)")
    similar.add_argument("--source", type=Path, default=Path("solutions"), help="assignment sources (solutions/)")
    similar.add_argument("--out", type=Path, default=Path("grades"), help="folder for similarity.html")
    similar.add_argument("--threshold", type=_share, default=0.5,
                         help="list pairs sharing at least this share of either student's answers (default 0.5)")  # fmt: skip
    similar.set_defaults(run=_similarity)

    validate = commands.add_parser("validate", help="check an assignment before submitting, as the grader runs it")
    validate.add_argument("notebooks", nargs="+", type=Path, help="your assignment notebooks (exercises/NN_*.ipynb)")
    validate.add_argument("--timeout", type=_positive(float), default=60.0, help="seconds per cell (default 60)")
    validate.add_argument("--notebook-timeout", type=_positive(float), default=300.0,
                          help="seconds for the whole notebook (default 300)")  # fmt: skip
    validate.set_defaults(run=_validate)

    marks = commands.add_parser("marks", help="the marking sheet of written answers as CSV: export it, import it")
    marks.add_argument("action", choices=["export", "import"])
    marks.add_argument("out", type=Path, help="the grade folder (--out of cnnlab grade)")
    marks.add_argument("file", nargs="?", type=Path, help="export: where to write (default stdout); import: the sheet")
    marks.set_defaults(run=_marks)

    export = commands.add_parser("export", help="the grade sheet as a Canvas or Moodle gradebook import")
    export.add_argument("out", type=Path, help="the grade folder (--out of cnnlab grade)")
    export.add_argument("--roster", type=Path, required=True,
                        help="Canvas: the gradebook export CSV; Moodle: a CSV with the --match-column")  # fmt: skip
    export.add_argument("--format", choices=["canvas", "moodle"], default="canvas")
    export.add_argument("--match-column", default=None,
                        help="roster column holding the student names cnnlab grades by "
                             "(default: canvas 'SIS Login ID', moodle 'Email address')")  # fmt: skip
    export.add_argument("--column", action="append", default=[], metavar="ASSIGNMENT=HEADER",
                        help="LMS column of an assignment, e.g. 03_mnist_cnn=\"Lab 3 (1234)\" (repeatable)")  # fmt: skip
    export.add_argument("--to", type=Path, required=True, help="the CSV to write")
    export.set_defaults(run=_export)

    refresh = commands.add_parser("refresh", help="re-execute notebooks and store their outputs")
    refresh.add_argument("notebooks", nargs="+", type=Path)
    refresh.set_defaults(run=_refresh)

    configure_lab = commands.add_parser(
        "configure-lab", help="the course's JupyterLab settings in this environment: no news prompt, no nbgrader instructor tools"
    )
    configure_lab.set_defaults(run=_configure_lab)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "grade":  # defaults that only mean something with --due
        args.late_penalty_given = any(v is not None for v in (args.late_penalty, args.late_cap, args.grace))
        args.late_penalty = 10.0 if args.late_penalty is None else args.late_penalty
        args.late_cap = 100.0 if args.late_cap is None else args.late_cap
        args.grace = "0" if args.grace is None else args.grace
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
