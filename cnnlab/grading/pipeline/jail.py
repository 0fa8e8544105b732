"""The first process inside the sandbox: limits and privileges, then ``exec`` the kernel.

    python .../cnnlab/grading/pipeline/jail.py --nproc N --fsize-mb M [--uid U --chown DIR] -- COMMAND...

* ``RLIMIT_NPROC`` (processes and threads of the kernel's user), ``RLIMIT_FSIZE``
  (largest file written), ``RLIMIT_CORE`` = 0;
* as root (the grader's sandbox runs as root when the grader does): hand
  ``--chown`` directories (the kernel's sockets) and the kernel's connection
  file to ``--uid``, drop every group and capability, switch real, effective
  and saved uid/gid to ``--uid``;
* ``no_new_privs``, so no set-uid program can give any of it back;
* a lower scheduling priority (nice 10), so that the grader, its watchdog
  included, keeps the CPU when a submission spins up processes.

Kept tiny and free of third-party imports: it runs before the kernel, in
every graded submission.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import sys

PR_SET_NO_NEW_PRIVS = 38


def _no_new_privs() -> None:
    if not sys.platform.startswith("linux"):  # prctl is Linux's; elsewhere (a student's Mac) there is no sandbox
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _connection_file(command: list[str]) -> str | None:
    return command[command.index("-f") + 1] if "-f" in command[:-1] else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cnnlab.grading.pipeline.jail")
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--fsize-mb", type=int, required=True)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--chown", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    if args.uid is not None:
        owned = [*args.chown, *filter(None, [_connection_file(command)])]
        for path in owned:
            os.chown(path, args.uid, args.uid)
        os.setgroups([])
        os.setresgid(args.uid, args.uid, args.uid)
        os.setresuid(args.uid, args.uid, args.uid)  # from root to another uid: every capability is dropped
        if os.geteuid() == 0 or os.getuid() == 0:
            raise SystemExit("cnnlab.grading.pipeline.jail: could not drop root")
    resource.setrlimit(resource.RLIMIT_NPROC, (args.nproc, args.nproc))
    size = args.fsize_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _no_new_privs()
    os.nice(10)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
