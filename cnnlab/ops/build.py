"""Compile the custom op against the installed TensorFlow, once, into a cache.

``build()`` is called on first use of :mod:`cnnlab.ops` and by
``cnnlab build-ops``. It

1. reads TensorFlow's own compile and link flags from ``tf.sysconfig``
   (on TF 2.21: ``--std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1
   -DEIGEN_MAX_ALIGN_BYTES=64`` and ``-l:libtensorflow_framework.so.2``);
2. names the library by a key over everything that changes the binary:
   TensorFlow version and flags, a hash of the kernel sources, the compiler
   versions, our flags and the CPU's instruction sets (we compile with
   ``-march=native``);
3. compiles under a file lock into a temporary directory and renames the
   result into place atomically, so parallel test workers and graders build
   once and never load a half-written file.

The GPU build
-------------
It is attempted when ``nvcc`` is found and TensorFlow is a CUDA build; it
adds the CUDA kernels (``lab_conv_kernels.cu``, compiled by nvcc for sm_80 and
sm_90, plus PTX) and their TensorFlow registration (``lab_conv_gpu.cc``).

The CUDA runtime is linked **statically** (``libcudart_static.a``), and
**before** TensorFlow's libraries on the link line. The reason: the nvcc on
the machine may be newer than the CUDA TensorFlow was built with (here
nvcc 13.0 against TensorFlow's CUDA 12.5), and ``libtensorflow_framework``
exports CUDA-12 runtime symbols (``cudaLaunchKernel`` and friends). Linked
dynamically, our kernels' launches would bind to TensorFlow's copy of the
runtime, which does not know the fat binaries a CUDA-13 nvcc registers, and
would fail with "invalid device function" or worse. With the static runtime
first, the launches of our kernels resolve inside our own library, against
the runtime our nvcc matches; only the ``cudaStream_t`` (a plain handle owned
by the driver) crosses the boundary. The ``.so`` still loads and runs its CPU
kernels on a machine without a GPU: the static runtime initialises lazily,
on the first CUDA call, which only a GPU kernel makes.

A failure raises :class:`BuildError` with one message naming the missing
tool or the failing command and the compiler's first error lines; there is
never a silent fallback to ``tf.nn.conv2d``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.ops.compile_cache import KERNELS, cached, kernel_files, key
from cnnlab.paths import ops_cache

__all__ = ["BuildError", "BuildPlan", "build", "cache_dir", "compiler_version", "describe", "plan"]

CPU_SOURCES = ("lab_conv_ops.cc", "lab_conv_cpu.cc")
GPU_CXX_SOURCES = ("lab_conv_gpu.cc",)
CUDA_SOURCES = ("lab_conv_kernels.cu",)
CXX_FLAGS = ("-O3", "-DNDEBUG", "-fPIC", "-Wno-deprecated-declarations")
CUDA_ARCHS = ("80", "90")
GPU_CHOICES = ("auto", "yes", "no")
_ERROR_LINES = 12


class BuildError(RuntimeError):
    """The op could not be built; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class BuildPlan:
    """What :func:`build` would do on this machine."""

    cxx: str
    nvcc: str | None
    gpu: bool
    why_cpu_only: str
    tf_version: str
    tf_compile_flags: tuple[str, ...]
    tf_link_flags: tuple[str, ...]
    tf_include: str
    cudart_dir: str | None
    arch_flags: tuple[str, ...] = ("-march=native",)
    key: str = field(default="")
    system: str = "Linux"  # platform.system(): "Linux" or "Darwin" (macOS)

    @property
    def library(self) -> Path:
        suffix = ".dylib" if self.system == "Darwin" else ".so"
        return cache_dir() / f"lab_conv_{'gpu' if self.gpu else 'cpu'}_{self.key}{suffix}"


def cache_dir() -> Path:
    """Where built ops live: :func:`cnnlab.paths.ops_cache`."""
    return ops_cache()


def compiler_version(path: str) -> str:
    """The version line of ``path --version`` (nvcc prints it last, g++ first). Raises :class:`BuildError`."""
    command = [path, "--version"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"`{' '.join(command)}` does not run: {error}") from error
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        raise BuildError(f"`{' '.join(command)}` failed (exit {out.returncode})")
    return lines[-1] if "nvcc" in Path(path).name else lines[0]


def _find_cxx(system: str | None = None) -> str:
    """$CXX, else the platform's compiler: g++ on Linux, the Xcode command-line tools' clang++ on macOS."""
    system = system or platform.system()
    names = ("clang++", "c++") if system == "Darwin" else ("g++", "c++")
    cxx = os.environ.get("CXX") or next(filter(None, map(shutil.which, names)), None)
    if not cxx or not shutil.which(cxx):
        install = ("Install Apple's command-line tools (`xcode-select --install`)" if system == "Darwin" else
                   "Install it (Debian/Ubuntu: `sudo apt-get install g++`; Fedora: `sudo dnf install gcc-c++`)")  # fmt: skip
        raise BuildError(
            f"no C++ compiler found: the custom op is compiled with {names[0]} on first use. "
            f"{install} or point $CXX at one, then run `cnnlab build-ops`. Everything else works without it."
        )
    return cxx


def _wheel_nvcc() -> str | None:
    """nvcc from NVIDIA's wheels (``requirements-cuda.txt``): ``site-packages/nvidia/cu13/bin/nvcc``."""
    try:
        import nvidia  # noqa: PLC0415 -- a namespace package; present only with the wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for toolkit in sorted(Path(root).glob("cu*")):
            if (toolkit / "bin" / "nvcc").is_file():
                return str(toolkit / "bin" / "nvcc")
    return None


def _find_nvcc() -> str | None:
    """$NVCC, else the pinned wheels' nvcc, else the one on PATH, else /usr/local/cuda's."""
    candidates = [os.environ.get("NVCC"), _wheel_nvcc(), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def _find_cudart_dir(nvcc: str) -> str | None:
    """The folder holding ``libcudart_static.a``, under $CUDA_HOME, nvcc's toolkit or /usr/local/cuda.

    A system toolkit keeps it in ``lib64/``, NVIDIA's wheels in ``lib/``.
    """
    homes = [os.environ.get("CUDA_HOME"), str(Path(nvcc).resolve().parent.parent), "/usr/local/cuda"]
    for home in filter(None, homes):
        for libdir in ("lib64", "lib"):
            if os.path.isfile(os.path.join(home, libdir, "libcudart_static.a")):
                return os.path.join(home, libdir)
    return None


def _cpu_features() -> str:
    """The CPU's instruction-set flags: ``-march=native`` output depends on them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _arch_flags(cxx: str, system: str = "Linux") -> tuple[str, ...]:
    """``-march=native``, minus AVX512-FP16 where the CPU has it; none on macOS.

    On macOS clang's default target for the machine (NEON on Apple silicon) is kept:
    Apple's clang has no ``-march=native`` for arm64.

    g++ 12 enables AVX512-FP16 on CPUs that have it (Sapphire Rapids), and the
    Eigen headers TensorFlow ships do not compile with it; our kernels never
    use half precision, so turning it off costs nothing.
    """
    if system == "Darwin":
        return ()
    flags = ("-march=native",)
    if "avx512_fp16" in _cpu_features():
        probe = [cxx, "-march=native", "-mno-avx512fp16", "-x", "c++", "-fsyntax-only", os.devnull]
        try:
            if subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
                flags += ("-mno-avx512fp16",)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return flags


def _source_hash() -> str:
    return key(files=kernel_files())


def plan(gpu: str = "auto") -> BuildPlan:
    """Decide how to build here, without building. Raises :class:`BuildError`."""
    if gpu not in GPU_CHOICES:
        raise BuildError(f"gpu must be one of {', '.join(GPU_CHOICES)}; got {gpu!r}")
    from cnnlab.env import import_tensorflow  # noqa: PLC0415

    tf = import_tensorflow()
    system = platform.system()
    cxx = _find_cxx(system)
    nvcc = _find_nvcc() if system == "Linux" else None
    cuda_build = tf.test.is_built_with_cuda()
    if gpu == "no":
        use_gpu, why = False, "GPU build not requested (gpu='no')"
    elif system != "Linux":
        use_gpu, why = False, f"no CUDA on {system}"
    elif nvcc is None:
        use_gpu, why = False, "nvcc not found"
    elif not cuda_build:
        use_gpu, why = False, "this TensorFlow is not a CUDA build"
    else:
        use_gpu, why = True, ""
    if gpu == "yes" and not use_gpu:
        raise BuildError(
            f"a GPU build was requested but {why}; install the CUDA toolkit and a CUDA TensorFlow"
        )
    cudart_dir = _find_cudart_dir(nvcc) if use_gpu else None
    if use_gpu and cudart_dir is None:
        use_gpu, why = (
            False,
            "the static CUDA runtime (libcudart_static.a) was not found; set $CUDA_HOME",
        )
        if gpu == "yes":
            raise BuildError(f"a GPU build was requested but {why}")
    compile_flags = tuple(tf.sysconfig.get_compile_flags())
    link_flags = tuple(tf.sysconfig.get_link_flags())
    base = BuildPlan(
        cxx=cxx,
        nvcc=nvcc if use_gpu else None,
        gpu=use_gpu,
        why_cpu_only=why,
        tf_version=tf.__version__,
        tf_compile_flags=compile_flags,
        tf_link_flags=link_flags,
        tf_include=tf.sysconfig.get_include(),
        cudart_dir=cudart_dir if use_gpu else None,
        arch_flags=_arch_flags(cxx, system),
        system=system,
    )
    digest = hashlib.sha256()
    for part in (
        tf.__version__,
        *compile_flags,
        *link_flags,
        _source_hash(),
        compiler_version(cxx),
        compiler_version(nvcc) if use_gpu else "cpu-only",
        *CXX_FLAGS,
        *base.arch_flags,
        *CUDA_ARCHS,
        _cpu_features(),
        sys.version,
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return BuildPlan(**{**base.__dict__, "key": digest.hexdigest()[:16]})


def _commands(p: BuildPlan, workdir: Path, output: Path) -> list[tuple[str, list[str]]]:
    """(label, argv) for each compile step, then the link step last."""
    include = ["-I", str(KERNELS)]
    steps: list[tuple[str, list[str]]] = []
    objects: list[str] = []
    gpu_defines = ["-DGOOGLE_CUDA=1", "-DEIGEN_USE_GPU"] if p.gpu else []
    cxx_sources = CPU_SOURCES + (GPU_CXX_SOURCES if p.gpu else ())
    for source in cxx_sources:
        obj = str(workdir / (source + ".o"))
        cuda_includes = (
            ["-I", os.path.join(p.tf_include, "third_party", "gpus", "cuda", "include")] if p.gpu else []
        )
        steps.append(
            (
                f"g++ {source}",
                [
                    p.cxx,
                    "-c",
                    str(KERNELS / source),
                    "-o",
                    obj,
                    *CXX_FLAGS,
                    *p.arch_flags,
                    *p.tf_compile_flags,
                    *gpu_defines,
                    *include,
                    *cuda_includes,
                ],
            )
        )
        objects.append(obj)
    link_cuda: list[str] = []
    if p.gpu:
        assert p.nvcc and p.cudart_dir
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in CUDA_ARCHS]
        gencode.append(f"-gencode=arch=compute_{CUDA_ARCHS[-1]},code=compute_{CUDA_ARCHS[-1]}")
        for source in CUDA_SOURCES:
            obj = str(workdir / (source + ".o"))
            steps.append(
                (
                    f"nvcc {source}",
                    [
                        p.nvcc,
                        "-c",
                        str(KERNELS / source),
                        "-o",
                        obj,
                        "-std=c++17",
                        "-O3",
                        "-Xcompiler",
                        "-fPIC",
                        *gencode,
                        *include,
                    ],
                )
            )
            objects.append(obj)
        # Static CUDA runtime first, TensorFlow's libraries after: see the module docstring.
        link_cuda = [f"-L{p.cudart_dir}", "-l:libcudart_static.a", "-ldl", "-lpthread", "-lrt"]
    # macOS: TensorFlow's symbols are resolved when the library is loaded into the running TensorFlow.
    shared = ["-shared", "-undefined", "dynamic_lookup"] if p.system == "Darwin" else ["-shared"]
    steps.append(("link", [p.cxx, *shared, "-o", str(output), *objects, *link_cuda, *p.tf_link_flags]))
    return steps


def _run_steps(steps: list[tuple[str, list[str]]]) -> None:
    """Compile steps in parallel (all but the last), then link; raise on the first failure."""
    compiles, (link_label, link_argv) = steps[:-1], steps[-1]
    running = [
        (label, argv, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for label, argv in compiles
    ]
    failure = None
    for label, argv, proc in running:
        output, _ = proc.communicate()
        if proc.returncode != 0 and failure is None:
            failure = (label, argv, output)
    if failure is None:
        done = subprocess.run(link_argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            failure = (link_label, link_argv, done.stdout)
    if failure:
        label, argv, output = failure
        lines = output.splitlines()
        errors = [line for line in lines if "error" in line.lower()] or lines
        excerpt = "\n    ".join(errors[:_ERROR_LINES])
        raise BuildError(
            f"building the custom op failed at step `{label}` ({argv[0]}); "
            f"first error lines:\n    {excerpt}\n"
            "Run `cnnlab doctor` to check the compilers, or `cnnlab build-ops --gpu no` for a CPU-only build."
        )


def build(*, force: bool = False, gpu: str = "auto", quiet: bool = False) -> Path:
    """The path of a built op library, compiling it first if the cache has none.

    Args:
        force: rebuild even if a matching library is cached.
        gpu: ``"auto"``, ``"yes"`` or ``"no"`` (see :func:`plan`).
        quiet: print nothing (errors are still raised).

    Raises:
        BuildError: a tool is missing or a compile step failed.
    """
    if gpu not in GPU_CHOICES:
        raise BuildError(f"gpu must be one of {', '.join(GPU_CHOICES)}; got {gpu!r}")
    if not force and (found := recorded_build(gpu)) is not None:
        return found  # no compiler needed, none probed
    p = plan(gpu)
    target = p.library
    if force:
        target.unlink(missing_ok=True)

    def make(staged: Path) -> None:
        if not quiet:
            kind = "CPU and CUDA kernels" if p.gpu else f"CPU kernels only ({p.why_cpu_only})"
            print(
                f"cnnlab: compiling the custom convolution op, {kind}; this happens once (about a minute)",
                flush=True,
            )
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as workdir:
            _run_steps(_commands(p, Path(workdir), staged))

    cached(target, make)
    _record(p)
    return target


# What a built library was built for. A record lets a machine load the library without
# a compiler (a JupyterHub image that compiled the op at build time and has no g++ at
# run time) and lets every graded kernel skip the compiler probes.
def _here() -> dict[str, str]:
    """What must match for a built library to load and run correctly here; cheap: no subprocess."""
    from cnnlab.env import import_tensorflow  # noqa: PLC0415

    tf = import_tensorflow()
    return {
        "tensorflow": tf.__version__,
        "tensorflow_flags": key(parts=[*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]),
        "sources": _source_hash(),
        "cpu_flags": key(parts=[_cpu_features()]),
        "python": sys.version,
        "system": platform.system(),
        "our_flags": key(parts=[*CXX_FLAGS, *CUDA_ARCHS]),
    }


def _record_path(library: Path) -> Path:
    return library.with_name(library.name + ".json")


def _record(p: BuildPlan) -> None:
    """Write what ``p.library`` was built for beside it (atomically)."""
    record = {**_here(), "gpu": p.gpu, "key": p.key, "library": p.library.name,
              "compilers": [compiler_version(p.cxx), compiler_version(p.nvcc) if p.nvcc else "no nvcc"]}  # fmt: skip
    path = _record_path(p.library)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(staged, path)


def recorded_build(gpu: str = "auto") -> Path | None:
    """A library already built for this machine's TensorFlow, sources, CPU and Python, or None.

    ``gpu="auto"`` prefers a CUDA build (it runs the CPU kernels too); ``"yes"`` and ``"no"``
    accept only that kind.
    """
    here = _here()
    found: list[tuple[bool, Path]] = []
    for path in sorted(cache_dir().glob("lab_conv_*.json")) if cache_dir().is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        library = cache_dir() / str(record.get("library", ""))
        if any(record.get(name) != value for name, value in here.items()) or not library.is_file():
            continue
        if gpu == "auto" or record.get("gpu") == (gpu == "yes"):
            found.append((bool(record.get("gpu")), library))
    return max(found)[1] if found else None


def describe() -> str:
    """One line for ``cnnlab doctor``: is the op built for this machine, and which kind."""
    found = recorded_build()
    if found is not None:
        gpu = found.name.startswith("lab_conv_gpu_")  # BuildPlan.library names the kind
        return f"built, {'CPU + CUDA kernels' if gpu else 'CPU kernels only'}: {found}"
    try:
        p = plan()
    except BuildError as error:
        return f"cannot be built here: {error}"
    kind = "CPU + CUDA kernels" if p.gpu else f"CPU kernels only ({p.why_cpu_only})"
    if p.library.is_file():
        return f"built, {kind}: {p.library}"
    return f"not built yet, {kind}; `cnnlab build-ops` builds it (it also builds on first use)"
