"""The sandbox's command line and environment, checked without running it; then run for real."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab
from cnnlab.grading.pipeline.execute import Limits
from cnnlab.grading.pipeline.sandbox import (
    KERNEL_UIDS,
    Sandbox,
    SandboxUnavailable,
    allowed_paths,
    kernel_environment,
    kernel_uids,
    probe,
)

PROJECT = Path(cnnlab.__file__).resolve().parents[1]


def _argv(tmp_path, enabled=True):
    return Sandbox(enabled=enabled, limits=Limits()).wrap(["python", "-c", "1"], tmp_path / "ipc", 61003,
                                                         kernel_environment(5, enabled, tmp_path))  # fmt: skip


def _mounts(argv):
    """(option, source) for every bind in a bwrap command line."""
    found = []
    for i, arg in enumerate(argv):
        if arg in ("--ro-bind", "--bind", "--bind-try", "--ro-bind-try", "--dev-bind"):
            found.append((arg, argv[i + 1]))
        if arg == "--":
            break
    return found


def test_every_bind_is_on_the_allow_list(tmp_path):
    allowed = {str(p) for p in allowed_paths()}
    for option, source in _mounts(_argv(tmp_path)):
        assert source in allowed or (option == "--bind" and source == str(tmp_path / "ipc")), source


def test_nothing_private_is_bound(tmp_path):
    binds = [Path(source) for _, source in _mounts(_argv(tmp_path))]
    home = Path.home()
    for path in binds:
        assert path != Path("/") and ".git" not in path.parts
        assert path not in (home, Path("/root"), Path("/home"), Path("/work"), Path("/srv"), Path("/mnt"), Path("/tmp"))
        assert not path.is_relative_to(PROJECT) or path in (Path(cnnlab.__file__).parent, Path(sys.prefix))
        assert not PROJECT.is_relative_to(path) or path == Path("/usr")  # never a folder holding the project
        assert not (PROJECT / "solutions").is_relative_to(path)
    assert ["--unshare-net", "--unshare-pid"] == [a for a in _argv(tmp_path) if a in ("--unshare-net", "--unshare-pid")]


def test_the_kernel_environment_carries_none_of_the_graders(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("JUPYTER_TOKEN", "do-not-leak")
    env = kernel_environment(5, True, tmp_path)
    assert "do-not-leak" not in " ".join(f"{k}={v}" for k, v in env.items())
    assert env["CNNLAB_GRADING_SEED"] == "5" and env["HOME"] == "/tmp" and env["CNNLAB_OFFLINE"] == "1"
    argv = _argv(tmp_path)
    assert argv[1] == "-i" and "do-not-leak" not in " ".join(argv)  # env -i: nothing inherited


def test_unsandboxed_runs_still_get_limits_and_a_clean_environment(tmp_path):
    argv = _argv(tmp_path, enabled=False)
    assert "bwrap" not in " ".join(argv) and any(a.endswith("grading/pipeline/jail.py") for a in argv) and argv[1] == "-i"


@pytest.mark.slow
def test_inside_the_sandbox_only_the_allow_list_exists(tmp_path):
    probe()
    check = (
        "import os, resource\n"
        f"hidden = [p for p in ('/root/.bash_history', '/home', '/srv', '/mnt', '/work/main/.git', '/etc/shadow', "
        f"{str(PROJECT / 'solutions')!r}, {str(PROJECT / '.git')!r}, {str(Path.home() / '.ssh')!r}) if os.path.exists(p)]\n"
        "print('visible:', hidden)\n"
        "print('uid:', os.getuid())\n"
        "print('nproc:', resource.getrlimit(resource.RLIMIT_NPROC)[0])\n"
        "print('root:', sorted(os.listdir('/')))\n"
        "open('/tmp/scratch', 'w').write('ok')\n"
        "import cnnlab\n"
        "try:\n    open(cnnlab.__file__, 'a')\n    print('package writable')\nexcept OSError:\n    print('package read-only')\n"
    )
    ipc = tmp_path / "ipc"
    ipc.mkdir()
    with kernel_uids(1) as (uid,):
        argv = Sandbox().wrap([sys.executable, "-c", check], ipc, uid, kernel_environment(1, True, tmp_path))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "visible: []" in out and "package read-only" in out and "nproc: 512" in out
    if os.geteuid() == 0:
        assert int(out.split("uid: ")[1].split()[0]) == uid
    root = eval(out.split("root: ")[1].splitlines()[0])  # noqa: S307 -- our own printed list
    assert set(root) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr",
                         *Path(sys.prefix).parts[1:2], *Path(sys.base_prefix).parts[1:2], *PROJECT.parts[1:2],
                         *Path.home().parts[1:2]}  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="kernel uids are claimed only when the grader is root")
def test_two_graders_never_share_a_kernel_uid(tmp_path):
    """RLIMIT_NPROC counts per uid: a fork bomb under a shared uid would stop the other grader's kernels."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom pathlib import Path\nfrom cnnlab.grading.pipeline.sandbox import kernel_uids\n"
        f"with kernel_uids(3, Path({str(tmp_path)!r})) as uids:\n    print(*uids, flush=True)\n    sys.stdin.read()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        theirs = {int(u) for u in holder.stdout.readline().split()}
        with kernel_uids(2, tmp_path) as mine, kernel_uids(1, tmp_path) as more:
            assert len(theirs) == 3 and set(mine + more) <= set(KERNEL_UIDS)
            assert len(set(mine) | set(more) | theirs) == 6
        with pytest.raises(SandboxUnavailable, match="kernel uids"):
            with kernel_uids(len(KERNEL_UIDS) - 2, tmp_path):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with kernel_uids(3, tmp_path) as again:  # its holder has exited: its uids are free again
        assert set(again) == theirs


def test_root_must_give_a_kernel_uid(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(ValueError, match="uid"):
        Sandbox().wrap(["python"], tmp_path, None, kernel_environment(1, True, tmp_path))
