// A CPU execution layer for CUDA kernel source, in the spirit of ROCm's HIP-CPU:
// the unchanged lab_conv_kernels.cu compiles with g++ and runs on the CPU, so CI
// without a GPU executes the real kernels and checks them.
//
// The model, and why it catches what a GPU would:
// - A launch runs every block of the grid. Blocks are taken from a shared counter by
//   a pool of worker threads, so blocks run concurrently: a race *between* blocks
//   (the filter gradient's K-split partial sums) happens here too, and a
//   ThreadSanitizer build reports it.
// - A block's threads run as fibers (ucontext) on one worker, one after another, each
//   until it reaches __syncthreads() or returns. __syncthreads() is a real barrier:
//   no fiber passes it until every thread of the block has arrived. A kernel that
//   leaves one out reads tiles that its siblings have not written yet (or have
//   already overwritten), and computes wrong results.
// - __shared__ variables are `static thread_local`: one copy per worker, which is one
//   copy per running block, shared by that block's fibers, as on a GPU.
// - atomicAdd is a real atomic read-modify-write (compare-and-swap on the CPU).
// - threadIdx / blockIdx / blockDim / gridDim are thread-local and set by the
//   scheduler before each fiber runs.
// - Launches are synchronous: they return when the grid is done. Streams are accepted
//   and ignored, which is stricter than CUDA's in-order streams.
//
// - Between barriers a block's threads run in the order CNNLAB_CUDA_THREAD_ORDER names:
//   "ascending" (the default), "descending" or "shuffled" (a new order each round,
//   seeded by the block). In ascending order a thread's writes are always visible to
//   higher threads even without a barrier; the other orders expose a missing barrier
//   whichever way the data flows.
// - Every __shared__ array a kernel marks with CNNLAB_POISON_SHARED(array) is filled
//   with NaN when a new block starts, as a GPU leaves whatever the last kernel wrote:
//   a tile entry that is read before this block writes it shows up in the result.
// - A launch is checked against a GPU's limits: at most 1024 threads per block,
//   blockDim.z <= 64, gridDim.y and gridDim.z <= 65535, gridDim.x < 2^31.
//
// What it cannot show: warps and their divergence, the GPU memory model (every write
// here is visible at once to the next fiber), bank conflicts, the shared-memory limit
// per block (__shared__ sizes are not counted), occupancy and speed. Those need a GPU
// (benchmarks/gpu_check.py). ThreadSanitizer sees races between blocks and inside one:
// a block's threads are fibers switched without synchronisation, and only a barrier (and
// the block's start and end) orders them, as on a GPU.
//
// Used through the shim headers in cuda_on_cpu/ (cuda_runtime.h, cuda_runtime_api.h),
// which replace CUDA's on the include path. The kernels launch with
// CNNLAB_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...), which nvcc
// builds as kernel<<<grid, block, shared_bytes, stream>>>(args...) (the kernel comes
// last so that a template's commas need no parentheses).
#ifndef CNNLAB_CUDA_ON_CPU_H_
#define CNNLAB_CUDA_ON_CPU_H_

#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <random>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#define CNNLAB_TSAN 1
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
}
// A block's threads are fibers of one worker. Switching between them creates no happens-before
// edge (no_sync), so ThreadSanitizer sees two threads of a block touching the same shared
// memory without a barrier between them as the race it is. The edges a GPU guarantees are
// added by hand: block start -> every thread, every thread's arrival at a barrier -> every
// thread's departure from it, every thread's end -> the block's end. The scheduler's own
// bookkeeping (threadIdx, fiber states, the first thread's NaN fill) is hidden from it.
#define CNNLAB_TSAN_NO_SYNC 1u
#define CNNLAB_TSAN_ACQUIRE(token) __tsan_acquire(token)
#define CNNLAB_TSAN_RELEASE(token) __tsan_release(token)
#define CNNLAB_TSAN_IGNORE_BEGIN() __tsan_ignore_thread_begin()
#define CNNLAB_TSAN_IGNORE_END() __tsan_ignore_thread_end()
#else
#define CNNLAB_TSAN 0
#define CNNLAB_TSAN_ACQUIRE(token) ((void)0)
#define CNNLAB_TSAN_RELEASE(token) ((void)0)
#define CNNLAB_TSAN_IGNORE_BEGIN() ((void)0)
#define CNNLAB_TSAN_IGNORE_END() ((void)0)
#endif

// ---- CUDA's keywords and types -------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaStream_t = void*;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorLaunchFailure = 4,
  cudaErrorInvalidConfiguration = 9,
};

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
inline T max(T a, T b) {
  return a < b ? b : a;
}

// A real atomic add, for any arithmetic type (float and double included).
template <typename T>
inline T atomicAdd(T* address, T value) {
  std::atomic_ref<T> target(*address);
  T seen = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(seen, seen + value, std::memory_order_relaxed)) {
  }
  return seen;
}

namespace cuda_on_cpu {

inline thread_local cudaError_t last_error = cudaSuccess;

// A number for the block this worker runs now, new for every block of every launch.
inline thread_local uint64_t block_serial = 0;
inline std::atomic<uint64_t> next_block_serial{1};

// CNNLAB_POISON_SHARED(array): the first thread of a block to get here fills the array with
// NaN (all bits set: NaN as float and as double); later threads of the same block do not.
inline void poison_once(void* array, std::size_t bytes) {
  CNNLAB_TSAN_IGNORE_BEGIN();  // the fill stands for what the last kernel left: no thread of this block wrote it
  static thread_local std::unordered_map<void*, uint64_t> poisoned_in;
  uint64_t& serial = poisoned_in[array];
  if (serial != block_serial) {
    serial = block_serial;
    std::memset(array, 0xFF, bytes);
  }
  CNNLAB_TSAN_IGNORE_END();
}

// ThreadSanitizer's synchronisation points for the block a worker runs: [0] its start, [1] its
// end, [2] and [3] alternate barriers (a thread releases barrier k + 2 only after every thread
// has left barrier k, so two suffice).
inline char* tsan_tokens() {
  static thread_local char tokens[4];
  return tokens;
}

enum class Order { kAscending, kDescending, kShuffled };

// CNNLAB_CUDA_THREAD_ORDER: the order a block's threads take turns between barriers.
inline Order thread_order() {
  const char* env = std::getenv("CNNLAB_CUDA_THREAD_ORDER");
  const std::string_view name = env ? env : "ascending";
  return name == "descending" ? Order::kDescending : name == "shuffled" ? Order::kShuffled : Order::kAscending;
}

// The fibers of one block, and the barrier they meet at.
class Block {
 public:
  Block(unsigned threads, std::size_t stack_bytes) : fibers_(threads), stacks_(threads) {
    for (auto& stack : stacks_) stack.reset(new char[stack_bytes]);
    stack_bytes_ = stack_bytes;
  }

  // Runs body() once per thread of the block; false if the threads deadlocked
  // (some returned while others wait at __syncthreads(), which CUDA leaves undefined).
  template <typename Body>
  bool run(const dim3& block_dim, Body& body) {
    const unsigned n = static_cast<unsigned>(fibers_.size());
    body_ = &body;
    invoke_ = [](void* b) { (*static_cast<Body*>(b))(); };
    for (unsigned t = 0; t < n; ++t) {
      Fiber& f = fibers_[t];
      f.state = kRunnable;
      f.barriers = 0;
      f.index = dim3(t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y));
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = stacks_[t].get();
      f.context.uc_stack.ss_size = stack_bytes_;
      f.context.uc_link = nullptr;  // trampoline() never returns
      makecontext(&f.context, reinterpret_cast<void (*)()>(&Block::trampoline), 0);
#if CNNLAB_TSAN
      f.tsan_fiber = __tsan_create_fiber(0);
#endif
    }
#if CNNLAB_TSAN
    tsan_scheduler_ = __tsan_get_current_fiber();
#endif
    current_block() = this;
    CNNLAB_TSAN_RELEASE(&tsan_tokens()[0]);  // everything set up so far happens before every thread
    block_serial = next_block_serial.fetch_add(1, std::memory_order_relaxed);
    const Order order = thread_order();
    std::vector<unsigned> turns(n);
    for (unsigned t = 0; t < n; ++t) turns[t] = order == Order::kDescending ? n - 1 - t : t;
    std::minstd_rand shuffle(static_cast<unsigned>(block_serial));
    unsigned done = 0;
    bool ok = true;
    while (done < n) {
      unsigned waiting = 0;
      if (order == Order::kShuffled) std::shuffle(turns.begin(), turns.end(), shuffle);
      for (unsigned t : turns) {
        Fiber& f = fibers_[t];
        if (f.state != kRunnable) continue;
        CNNLAB_TSAN_IGNORE_BEGIN();
        running_ = t;
        threadIdx = f.index;
        CNNLAB_TSAN_IGNORE_END();
#if CNNLAB_TSAN
        __tsan_switch_to_fiber(f.tsan_fiber, CNNLAB_TSAN_NO_SYNC);
#endif
        swapcontext(&scheduler_, &f.context);
        CNNLAB_TSAN_IGNORE_BEGIN();
        if (f.state == kDone) ++done;
        CNNLAB_TSAN_IGNORE_END();
      }
      CNNLAB_TSAN_IGNORE_BEGIN();
      for (auto& f : fibers_) waiting += f.state == kAtBarrier;
      CNNLAB_TSAN_IGNORE_END();
      if (waiting == 0) continue;
      if (waiting + done < n) continue;  // some threads have not reached the barrier yet
      if (done > 0) {                    // a barrier that can never open
        ok = false;
        break;
      }
      CNNLAB_TSAN_IGNORE_BEGIN();
      for (auto& f : fibers_) f.state = kRunnable;  // everyone arrived: open the barrier
      CNNLAB_TSAN_IGNORE_END();
    }
    CNNLAB_TSAN_ACQUIRE(&tsan_tokens()[1]);  // every thread's work happens before the block's end
#if CNNLAB_TSAN
    for (auto& f : fibers_) __tsan_destroy_fiber(f.tsan_fiber);
#endif
    current_block() = nullptr;
    return ok;
  }

  // __syncthreads(): park this fiber until the whole block has arrived.
  void barrier() {
    CNNLAB_TSAN_IGNORE_BEGIN();
    Fiber& f = fibers_[running_];
    f.state = kAtBarrier;
    char* token = &tsan_tokens()[2 + (f.barriers & 1)];
    ++f.barriers;
    [[maybe_unused]] void* scheduler_fiber = tsan_scheduler_;
    CNNLAB_TSAN_IGNORE_END();
    CNNLAB_TSAN_RELEASE(token);  // this thread's writes before the barrier ...
#if CNNLAB_TSAN
    __tsan_switch_to_fiber(scheduler_fiber, CNNLAB_TSAN_NO_SYNC);
#endif
    swapcontext(&f.context, &scheduler_);
    CNNLAB_TSAN_ACQUIRE(token);  // ... happen before every thread's reads after it
  }

  static Block*& current_block() {
    static thread_local Block* block = nullptr;
    return block;
  }

 private:
  enum State { kRunnable, kAtBarrier, kDone };
  struct Fiber {
    ucontext_t context;
    State state = kRunnable;
    dim3 index;
    unsigned barriers = 0;  // barriers passed so far
    void* tsan_fiber = nullptr;
  };

  // A fiber's first frame. It never returns: it jumps back to the scheduler, so that
  // no function epilogue runs after ThreadSanitizer has switched to the scheduler's
  // fiber (an epilogue would pop the scheduler's shadow stack instead of its own).
  static void trampoline() {
    CNNLAB_TSAN_ACQUIRE(&tsan_tokens()[0]);
    Block* self = current_block();
    self->invoke_(self->body_);
    CNNLAB_TSAN_IGNORE_BEGIN();
    self->fibers_[self->running_].state = kDone;
    [[maybe_unused]] void* scheduler_fiber = self->tsan_scheduler_;
    CNNLAB_TSAN_IGNORE_END();
    CNNLAB_TSAN_RELEASE(&tsan_tokens()[1]);
#if CNNLAB_TSAN
    __tsan_switch_to_fiber(scheduler_fiber, CNNLAB_TSAN_NO_SYNC);
#endif
    setcontext(&self->scheduler_);
  }

  std::vector<Fiber> fibers_;
  std::vector<std::unique_ptr<char[]>> stacks_;
  std::size_t stack_bytes_ = 0;
  ucontext_t scheduler_{};
  unsigned running_ = 0;
  void* body_ = nullptr;
  void (*invoke_)(void*) = nullptr;
  void* tsan_scheduler_ = nullptr;
};

// Worker threads for a launch: CNNLAB_CPU_WORKERS, else the hardware's threads, at least 2.
inline unsigned worker_count() {
  if (const char* env = std::getenv("CNNLAB_CPU_WORKERS")) {
    const int n = std::atoi(env);
    if (n > 0) return static_cast<unsigned>(n);
  }
  return std::max(2u, std::thread::hardware_concurrency());
}

template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  const bool too_large = threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
                         grid.x > 0x7FFFFFFFu || grid.y > 65535 || grid.z > 65535;  // a GPU's limits
  if (threads == 0 || blocks == 0 || too_large) return last_error = cudaErrorInvalidConfiguration;
  // Relaxed on purpose: taking a block must not order one block's memory accesses
  // before another's, or ThreadSanitizer could not see races between blocks.
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  const unsigned n = static_cast<unsigned>(std::min<uint64_t>(worker_count(), blocks));
  std::latch started(n);  // no worker takes a block before all have started: they share the grid
  auto work = [&] {
    Block fibers(static_cast<unsigned>(threads), std::size_t{1} << 18);
    started.arrive_and_wait();
    gridDim = grid;
    blockDim = block;
    auto body = [&] { kernel(args...); };
    for (uint64_t b; (b = next.fetch_add(1, std::memory_order_relaxed)) < blocks;) {
      blockIdx = dim3(static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                      static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y)));
      if (!fibers.run(block, body)) failed.store(true, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < n; ++i) workers.emplace_back(work);
  work();
  for (auto& w : workers) w.join();
  return last_error = failed ? cudaErrorLaunchFailure : cudaSuccess;
}

// CNNLAB_LAUNCH(grid, block, smem, stream, kernel)(args...): launch, remembering the error.
template <typename Kernel>
auto launcher(Kernel kernel, dim3 grid, dim3 block) {
  return [=](auto... args) { launch(kernel, grid, block, args...); };
}

}  // namespace cuda_on_cpu

inline void __syncthreads() { cuda_on_cpu::Block::current_block()->barrier(); }

#define CNNLAB_LAUNCH(grid, block, shared_bytes, stream, ...) \
  ::cuda_on_cpu::launcher(__VA_ARGS__, dim3(grid), dim3(block))

#define CNNLAB_POISON_SHARED(array) ::cuda_on_cpu::poison_once(&(array), sizeof(array))

// ---- the runtime calls the launchers make ---------------------------------------
inline cudaError_t cudaMemsetAsync(void* pointer, int value, std::size_t bytes, cudaStream_t = nullptr) {
  std::memset(pointer, value, bytes);
  return cudaSuccess;
}

inline cudaError_t cudaGetLastError() {
  const cudaError_t error = cuda_on_cpu::last_error;
  cuda_on_cpu::last_error = cudaSuccess;
  return error;
}

inline const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure (threads of a block deadlocked at __syncthreads)";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
  }
  return "unknown error";
}

#endif  // CNNLAB_CUDA_ON_CPU_H_
