// The machine's ceiling for a convolution: fused multiply-adds per second when
// nothing else limits them. Each thread runs 12 independent FMA chains on vector
// registers (more than the FMA latency times the FMA ports on any x86 core since
// Haswell, so no chain waits for its last result), with no loads, stores or
// shuffles. bench_conv.py prints each pass's GFLOP/s as a share of this figure.
//
//   g++ -O2 -march=x86-64-v3 -pthread fma_peak.cc   # 256-bit FMAs (AVX2)
//   g++ -O2 -march=native    -pthread fma_peak.cc   # 512-bit where the CPU has AVX-512
//   ./a.out THREADS                                 # prints: GFLOPS LANES
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#if !defined(__x86_64__) || !defined(__FMA__)
#error "fma_peak.cc measures x86-64 FMA (AVX2 or AVX-512) only"
#endif

#if defined(__AVX512F__)
#define REG(n) "%%zmm" #n
constexpr int kLanes = 16;  // floats per 512-bit register
#else
#define REG(n) "%%ymm" #n
constexpr int kLanes = 8;  // floats per 256-bit register
#endif
#define FMA(n) "vfmadd231ps " REG(14) ", " REG(15) ", " REG(n) "\n\t"

constexpr int kChains = 12;

static void Chains(long trips) {
  for (long t = 0; t < trips; ++t) {
    asm volatile(FMA(0) FMA(1) FMA(2) FMA(3) FMA(4) FMA(5) FMA(6) FMA(7) FMA(8) FMA(9) FMA(10) FMA(11)
                 :
                 :
                 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11");
  }
}

// GFLOP/s of `threads` threads each running `trips` trips of the chains.
static double Rate(int threads, long trips) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(Chains, trips);
  for (auto& thread : pool) thread.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return threads * static_cast<double>(trips) * kChains * kLanes * 2 / seconds / 1e9;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  if (threads < 1) {
    std::fprintf(stderr, "usage: %s THREADS (a whole number, at least 1)\n", argv[0]);
    return 2;
  }
  double best = 0;
  for (int round = 0; round < 5; ++round) {  // the best of five: a peak, so a round slowed by a neighbour is discarded
    const double rate = Rate(threads, 20000000);
    best = rate > best ? rate : best;
  }
  std::printf("%.1f %d\n", best, kLanes);
  return 0;
}
