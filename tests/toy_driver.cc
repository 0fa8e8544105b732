// Runs the toy ReadNeighbour kernel once (tests/toy_kernels.cu), for the ThreadSanitizer tests of the
// CUDA-on-CPU harness: toy_driver OFFSET WITH_BARRIER. Exit 0 when every output is right.
#include <cstdio>
#include <cstdlib>
#include <vector>

extern "C" int read_neighbour(const float* in, float* out, int blocks, int offset, int with_barrier);

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: toy_driver OFFSET WITH_BARRIER\n");
    return 2;
  }
  const int offset = std::atoi(argv[1]), with_barrier = std::atoi(argv[2]), blocks = 4, threads = 256;
  std::vector<float> in(blocks * threads), out(blocks * threads, -1.0f);
  for (int i = 0; i < blocks * threads; ++i) in[i] = static_cast<float>(i);
  if (read_neighbour(in.data(), out.data(), blocks, offset, with_barrier) != 0) return 3;
  int wrong = 0;
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) {
      const int u = t + offset;
      const float want = (u >= 0 && u < threads) ? in[b * threads + u] : 0.0f;
      wrong += out[b * threads + t] != want;
    }
  std::printf("%d wrong outputs of %d\n", wrong, blocks * threads);
  return wrong ? 1 : 0;
}
