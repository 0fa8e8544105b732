// Toy kernels for the tests of the CUDA-on-CPU harness itself (tests/ops/test_cuda_on_cpu.py):
// a shared-memory exchange between neighbouring threads, with or without its barrier, and
// an empty kernel to try launch configurations against a GPU's limits.
#include <cuda_runtime.h>

#ifndef CNNLAB_LAUNCH
#define CNNLAB_LAUNCH(grid, block, shared_bytes, stream, ...) __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#endif

constexpr int kThreads = 256;

// out[t] = in[t + offset] through shared memory (0 where t + offset leaves the block).
__global__ void ReadNeighbour(const float* in, float* out, int offset, int with_barrier) {
  __shared__ float slots[kThreads];
  const int t = threadIdx.x, base = blockIdx.x * kThreads, u = t + offset;
  slots[t] = in[base + t];
  if (with_barrier) __syncthreads();
  out[base + t] = (u >= 0 && u < kThreads) ? slots[u] : 0.0f;
}

__global__ void Nothing() {}

extern "C" int read_neighbour(const float* in, float* out, int blocks, int offset, int with_barrier) {
  CNNLAB_LAUNCH(dim3(blocks), dim3(kThreads), 0, nullptr, ReadNeighbour)(in, out, offset, with_barrier);
  return cudaGetLastError();
}

extern "C" int launch_nothing(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
  CNNLAB_LAUNCH(dim3(gx, gy, gz), dim3(bx, by, bz), 0, nullptr, Nothing)();
  return cudaGetLastError();
}
