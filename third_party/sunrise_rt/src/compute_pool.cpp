#include "compute_pool.h"

#include <exception>

namespace sunrise_rt {

// Set while a device thread executes a kernel or host function, so that
// srReportAsyncError knows which launch and device to blame.
thread_local KernelJob* t_current_job = nullptr;
thread_local int t_executing_device = -1;

void run_blocks(KernelJob& job, int unit) {
  KernelJob* const saved_job = t_current_job;
  const int saved_device = t_executing_device;
  t_current_job = &job;
  t_executing_device = job.device;
  srKernelContext ctx{};
  ctx.gridDim = job.grid;
  ctx.blockDim = job.block;
  ctx.computeUnit = unit;
  ctx.device = job.device;
  const uint64_t gx = job.grid.x, gy = job.grid.y;
  for (;;) {
    const uint64_t b = job.next_block.fetch_add(1, std::memory_order_relaxed);
    if (b >= job.total_blocks) break;
    ctx.blockIdx.x = static_cast<unsigned>(b % gx);
    ctx.blockIdx.y = static_cast<unsigned>((b / gx) % gy);
    ctx.blockIdx.z = static_cast<unsigned>(b / (gx * gy));
    try {
      job.kernel(&ctx, job.args);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(job.error_mutex);
      if (job.error == srSuccess) {
        job.error = srErrorLaunchFailure;
        job.error_detail = std::string("kernel threw: ") + e.what();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(job.error_mutex);
      if (job.error == srSuccess) {
        job.error = srErrorLaunchFailure;
        job.error_detail = "kernel threw a non-standard exception";
      }
    }
    job.done_blocks.fetch_add(1, std::memory_order_acq_rel);
  }
  t_current_job = saved_job;
  t_executing_device = saved_device;
}

ComputePool::ComputePool(int device, int units) : device_(device), units_(units < 1 ? 1 : units) {
  for (int u = 1; u < units_; ++u) helpers_.emplace_back([this, u] { helper_loop(u); });
}

ComputePool::~ComputePool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : helpers_) t.join();
}

void ComputePool::run(const std::shared_ptr<KernelJob>& job) {
  if (units_ > 1 && job->total_blocks > 1) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(job);
      queued_.fetch_add(1, std::memory_order_release);
      wake = sleeping_ > 0;
    }
    if (wake) cv_.notify_all();
  }
  run_blocks(*job, 0);
  // Every block is claimed; wait for helpers still inside one. Blocks are
  // short slices of work, so spinning is the right wait here.
  const uint64_t total = job->total_blocks;
  while (job->done_blocks.load(std::memory_order_acquire) < total) cpu_relax();
}

void ComputePool::helper_loop(int unit) {
  name_this_thread("sunrise" + std::to_string(device_) + ":cu" + std::to_string(unit));
  const int64_t spin_ns = config().spin_ns;
  for (;;) {
    std::shared_ptr<KernelJob> job;
    // Spin briefly for the next launch before paying for a sleep.
    spin_until([this] { return queued_.load(std::memory_order_acquire) > 0; }, spin_ns);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++sleeping_;
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      --sleeping_;
      if (stopping_) return;
      job = jobs_.front();
      // Exhausted jobs leave the queue here, so the launcher need not.
      if (job->next_block.load(std::memory_order_relaxed) >= job->total_blocks) {
        jobs_.pop_front();
        queued_.fetch_sub(1, std::memory_order_release);
        continue;
      }
    }
    run_blocks(*job, unit);
  }
}

}  // namespace sunrise_rt
