"""Rigs for testing and benchmarking the kernels: not part of the cnnlab package, and not installed.

The op itself lives in ``cnnlab.ops``. These modules drive its kernel sources from
outside TensorFlow, for ``tests/`` and ``benchmarks/`` only:

- :mod:`kernel_rigs.standalone`: ``lab_conv_kernels.cu`` built alone with nvcc and
  called through ctypes on a GPU (no TensorFlow needed);
- :mod:`kernel_rigs.cuda_on_cpu`: the same file built with g++ against the headers
  in ``kernel_rigs/cuda_on_cpu/``, which run CUDA blocks and threads on the CPU;
- :mod:`kernel_rigs.resources`: registers, shared memory and occupancy per kernel,
  read from ``ptxas -v``.

Run from the repository root (pytest's ``pythonpath`` and the benchmarks put it on
``sys.path``).
"""
