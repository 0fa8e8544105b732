"""cnnlab.ops.build: cache key, clear failures, one build under concurrency, static CUDA runtime."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cnnlab.ops import build


def test_bad_gpu_choice_is_named():
    with pytest.raises(build.BuildError, match="gpu must be one of auto, yes, no"):
        build.plan("maybe")


def test_missing_compiler_is_one_clear_message(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(build.BuildError, match=r"no C\+\+ compiler found.*apt-get install g\+\+"):
        build.plan("no")


def test_a_failing_compiler_reports_the_step_and_its_first_errors(monkeypatch, tmp_path):
    fake = tmp_path / "fake-g++"
    fake.write_text(
        textwrap.dedent("""\
        #!/bin/sh
        if [ "$1" = "--version" ]; then echo "fake g++ 1.0"; exit 0; fi
        echo "In file included from somewhere.h:1,"
        echo "lab_conv_cpu.cc:10:5: error: boom"
        exit 1
        """)
    )
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.setenv("CNNLAB_OPS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(build.BuildError) as error:
        build.build(gpu="no", quiet=True)
    message = str(error.value)
    assert "failed at step `g++ lab_conv_" in message
    assert "error: boom" in message and "In file included" not in message
    assert not list((tmp_path / "cache").glob("*.so")), "no half-built library may be left behind"


def test_the_cache_key_follows_the_sources(monkeypatch):
    first = build.plan("no").key
    monkeypatch.setattr(build, "_source_hash", lambda: "edited")
    assert build.plan("no").key != first
    assert build.plan("no").library.name.startswith("lab_conv_cpu_")


def _refuse(*args, **kwargs):
    raise AssertionError("a compiler was probed")


def test_a_built_op_is_recorded_and_loads_without_probing_a_compiler(monkeypatch):
    library = build.build(quiet=True)
    record = json.loads(library.with_name(library.name + ".json").read_text())
    assert record["library"] == library.name and record["key"] in library.name
    assert record["gpu"] == library.name.startswith("lab_conv_gpu_") and record["python"] == sys.version
    assert {"tensorflow", "cpu_flags", "sources", "compilers"} <= set(record)
    for name in ("_find_cxx", "_find_nvcc", "compiler_version", "_arch_flags"):
        monkeypatch.setattr(build, name, _refuse)
    monkeypatch.setattr(build.subprocess, "run", _refuse)
    assert build.build() == library
    assert build.describe().startswith("built, ")


def test_a_record_for_other_sources_or_another_cpu_is_not_used(monkeypatch):
    build.build(quiet=True)
    assert build.recorded_build() is not None
    with monkeypatch.context() as patched:
        patched.setattr(build, "_source_hash", lambda: "edited")
        assert build.recorded_build() is None
    with monkeypatch.context() as patched:
        patched.setattr(build, "_cpu_features", lambda: "flags : sse2")
        assert build.recorded_build() is None
    assert build.recorded_build("yes" if build.recorded_build().name.startswith("lab_conv_gpu_") else "no")


@pytest.mark.slow
def test_a_machine_without_a_compiler_runs_the_op_built_earlier(tmp_path):
    build.build(quiet=True)  # the image was built with a compiler ...
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler")}  # ... and runs without one
    code = (
        "import numpy as np\n"
        "from cnnlab import ops\n"
        "print(float(np.sum(ops.conv2d(np.ones((1, 3, 3, 1), 'float32'), np.ones((2, 2, 1, 1), 'float32')))))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "16.0"


def test_parallel_first_uses_build_once(tmp_path):
    """Two processes need the op at once: one compiles, the other waits for it; both get the same library.

    The compiler is a stand-in that takes two seconds per step and counts its calls, so that the test
    is about the cache's lock; the real compile is covered by every test that loads the op.
    """
    calls = tmp_path / "calls"
    fake = tmp_path / "fake-g++"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = "--version" ]; then echo "fake g++ 1.0"; exit 0; fi
        echo "$@" >> {calls}
        sleep 2
        while [ "$#" -gt 0 ]; do if [ "$1" = "-o" ]; then touch "$2"; fi; shift; done
        """))
    fake.chmod(0o755)
    env = {**os.environ, "CNNLAB_OPS_CACHE": str(tmp_path / "cache"), "CXX": str(fake)}
    code = "from cnnlab.ops import build\nprint(build.build(gpu='no'))"
    workers = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err
    outputs = "".join(out for out, _ in results)
    assert outputs.count("compiling the custom convolution op") == 1
    assert "CPU kernels only (GPU build not requested" in outputs
    libraries = {out.strip().splitlines()[-1] for out, _ in results}
    assert len(libraries) == 1 and len(list((tmp_path / "cache").glob("*.so"))) == 1
    steps = calls.read_text().splitlines()
    assert sum(" -c " in f" {step} " for step in steps) == len(build.CPU_SOURCES)  # each source compiled once
    assert sum("-shared" in step.split() for step in steps) == 1  # and linked once
    assert not list((tmp_path / "cache").glob(".build-*")), "temporary build directories are cleaned up"


@pytest.mark.skipif(build._find_nvcc() is None, reason="nvcc not installed (make cuda): no GPU build to check")
def test_gpu_build_links_the_cuda_runtime_statically_and_runs_cpu_kernels_without_a_gpu():
    from cnnlab import ops

    plan = build.plan("auto")
    if not plan.gpu:
        pytest.skip(plan.why_cpu_only)
    library = ops.load_library()  # this very process has no GPU: CPU kernels from the GPU-enabled .so
    path = build.build()
    assert path == plan.library and "_gpu_" in path.name
    symbols = subprocess.run(["nm", "-D", str(path)], capture_output=True, text=True, check=True).stdout
    defined = {line.split()[-1] for line in symbols.splitlines() if " T " in line}
    undefined = {line.split()[-1] for line in symbols.splitlines() if " U " in line}
    assert {"cnnlab_conv2d_forward_f32", "cnnlab_conv2d_backprop_filter_f64"} <= defined
    assert not {s for s in undefined if s.startswith("cuda")}, "CUDA runtime must come from the static copy"
    import numpy as np

    from cnnlab.env import import_tensorflow

    tf = import_tensorflow()
    y = library.lab_conv2d(tf.ones([1, 4, 4, 2]), tf.ones([3, 3, 2, 1]), strides=[1, 1], padding="VALID")
    np.testing.assert_allclose(y, np.full((1, 2, 2, 1), 18.0))


def _plan_for(system, cxx):
    return build.BuildPlan(cxx=cxx, nvcc=None, gpu=False, why_cpu_only="", tf_version="2.21.0",
                           tf_compile_flags=("-I/tf/include", "-D_GLIBCXX_USE_CXX11_ABI=1", "--std=c++17"),
                           tf_link_flags=("-L/tf", "-ltensorflow_framework.2"), tf_include="/tf/include",
                           cudart_dir=None, arch_flags=build._arch_flags(cxx, system), key="k", system=system)  # fmt: skip


@pytest.mark.parametrize("system, cxx, library, link, arch", [
    ("Linux", "g++", "lab_conv_cpu_k.so", ["-shared"], ["-march=native"]),
    ("Darwin", "/usr/bin/clang++", "lab_conv_cpu_k.dylib", ["-shared", "-undefined", "dynamic_lookup"], []),
])  # fmt: skip
def test_the_command_lines_for_linux_and_macos(tmp_path, system, cxx, library, link, arch):
    """Generated, never run: TensorFlow's macOS wheels load ops built with clang against tf.sysconfig's flags."""
    plan = _plan_for(system, cxx)
    assert plan.library.name == library
    steps = build._commands(plan, tmp_path, tmp_path / library)
    compiles, (label, linker) = steps[:-1], steps[-1]
    assert [argv[0] for _, argv in compiles] == [cxx] * len(build.CPU_SOURCES) and label == "link"
    for _, argv in compiles:
        assert "-fPIC" in argv and "-I/tf/include" in argv and [f for f in argv if f.startswith("-m")] == arch
        assert "nvcc" not in " ".join(argv)
    assert linker[:1 + len(link)] == [cxx, *link] and linker[-2:] == ["-L/tf", "-ltensorflow_framework.2"]
    assert ("-undefined" in linker) == (system == "Darwin")


def test_macos_looks_for_clang_and_says_how_to_get_it(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(build.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(build.BuildError, match=r"compiled with clang\+\+.*xcode-select --install"):
        build.plan("no")
