// The compute units of one device: the threads that execute a launch's blocks.
//
// A launch is executed by the stream thread that dequeued it (compute unit 0)
// together with the pool's helper threads (units 1..N-1). Blocks are claimed
// one at a time from an atomic counter, so whoever is free runs the next block;
// the stream thread always takes part, which means a launch makes progress even
// when every helper is busy with another stream's launch. There is no nesting:
// a block never launches, so the pool never oversubscribes the cores.
#pragma once

#include "internal.h"

#include <deque>

namespace sunrise_rt {

struct KernelJob {
  srKernel_t kernel = nullptr;
  srDim3 grid{1, 1, 1};
  srDim3 block{1, 1, 1};
  void* args = nullptr;
  int device = 0;
  uint64_t total_blocks = 0;
  std::atomic<uint64_t> next_block{0};
  std::atomic<uint64_t> done_blocks{0};
  // First exception or error raised by a block (guarded by error_mutex).
  std::mutex error_mutex;
  srError_t error = srSuccess;
  std::string error_detail;
};

class ComputePool {
 public:
  ComputePool(int device, int units);
  ~ComputePool();
  ComputePool(const ComputePool&) = delete;  // owns threads
  ComputePool& operator=(const ComputePool&) = delete;

  // Runs every block of the job; returns once all have finished. Called from a
  // stream thread.
  void run(const std::shared_ptr<KernelJob>& job);
  int units() const { return units_; }

 private:
  void helper_loop(int unit);

  int device_;
  int units_;
  std::mutex mutex_;               // guards jobs_, stopping_, sleeping_
  std::condition_variable cv_;
  std::deque<std::shared_ptr<KernelJob>> jobs_;
  std::atomic<int> queued_{0};     // jobs_.size(), readable without the lock
  int sleeping_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> helpers_;
};

// Runs blocks of `job` as compute unit `unit` until none are left.
void run_blocks(KernelJob& job, int unit);

}  // namespace sunrise_rt
