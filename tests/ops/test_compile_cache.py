"""cnnlab.ops.compile_cache: one key over every input, shared by the op, the standalone CUDA build and CUDA on the CPU."""

import pytest

from cnnlab.ops import compile_cache
from kernel_rigs import cuda_on_cpu, standalone


def test_every_kernel_source_and_header_is_an_input():
    names = {path.name for path in compile_cache.kernel_files()}
    assert {"lab_conv_kernels.cu", "lab_conv_cpu.cc", "lab_conv_launchers.h", "conv_geometry.h"} <= names
    assert not names & {"cuda_on_cpu.h", "cuda_runtime.h"}  # the CPU stand-ins are rigs, outside the package


def test_the_key_follows_every_file_and_part(tmp_path):
    header = tmp_path / "a.h"
    header.write_text("int a;")
    first = compile_cache.key(parts=["-O3"], files=[header])
    assert compile_cache.key(parts=["-O2"], files=[header]) != first
    header.write_text("int a; // edited")
    assert compile_cache.key(parts=["-O3"], files=[header]) != first


def test_cached_builds_once_and_leaves_nothing_behind_when_the_build_fails(tmp_path):
    built = []

    def make(staged):
        built.append(staged)
        staged.write_text("library")

    target = tmp_path / "out.so"
    assert compile_cache.cached(target, make) == target == compile_cache.cached(target, make)
    assert len(built) == 1 and target.read_text() == "library"

    def fail(staged):
        staged.write_text("half a library")
        raise RuntimeError("compiler error")

    with pytest.raises(RuntimeError, match="compiler error"):
        compile_cache.cached(tmp_path / "broken.so", fail)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["out.so"]


def _edited_launchers_header(tmp_path):
    """kernel_files() with lab_conv_launchers.h replaced by an edited copy."""
    files = compile_cache.kernel_files()
    original = next(p for p in files if p.name == "lab_conv_launchers.h")
    edited = tmp_path / original.name
    edited.write_text(original.read_text() + "\n// edited\n")
    return [edited if p == original else p for p in files]


def test_the_standalone_build_is_renamed_when_the_launchers_header_changes(monkeypatch, tmp_path):
    targets = []
    monkeypatch.setattr(standalone, "cached", lambda target, make: targets.append(target.name) or target)
    monkeypatch.setattr(standalone, "_find_nvcc", lambda: "/opt/cuda/bin/nvcc")
    monkeypatch.setattr(standalone, "_find_cudart_dir", lambda nvcc: "/opt/cuda/lib64")
    standalone.build_standalone(tmp_path)
    monkeypatch.setattr(standalone, "kernel_files", lambda: _edited_launchers_header(tmp_path))
    standalone.build_standalone(tmp_path)
    assert len(set(targets)) == 2  # the edited header is never served by the old library


def test_the_cuda_on_cpu_build_is_renamed_when_a_kernel_header_changes(monkeypatch, tmp_path):
    targets = []
    monkeypatch.setattr(cuda_on_cpu, "cached", lambda target, make: targets.append(target.name) or target)
    cuda_on_cpu.build_on_cpu(out_dir=tmp_path)
    monkeypatch.setattr(cuda_on_cpu, "kernel_files", lambda: _edited_launchers_header(tmp_path))
    cuda_on_cpu.build_on_cpu(out_dir=tmp_path)
    assert len(set(targets)) == 2


def test_the_cuda_on_cpu_build_is_renamed_when_a_stand_in_header_changes(monkeypatch, tmp_path):
    targets = []
    monkeypatch.setattr(cuda_on_cpu, "cached", lambda target, make: targets.append(target.name) or target)
    cuda_on_cpu.build_on_cpu(out_dir=tmp_path)
    original = cuda_on_cpu.SHIM / "cuda_on_cpu.h"
    edited = tmp_path / original.name
    edited.write_text(original.read_text() + "\n// edited\n")
    monkeypatch.setattr(cuda_on_cpu, "shim_files", lambda: [edited if p == original else p for p in sorted(cuda_on_cpu.SHIM.glob("*.h"))])
    cuda_on_cpu.build_on_cpu(out_dir=tmp_path)
    assert len(set(targets)) == 2
