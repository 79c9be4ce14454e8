// Putting work on a sunrise stream from C++.
//
//   launch_blocks(stream, num_blocks, f)  f(block_index) runs once per block,
//       blocks spread over the device's compute units. f is copied into the
//       launch (like CUDA kernel parameters) and must be trivially copyable.
//   launch_task(stream, f)  f() runs once on the stream's device thread, in
//       stream order. f may own anything (tensors, vectors); it is destroyed
//       on the host after it ran (see release_finished_tasks).
//
// Both return as soon as the work is queued. On a stream that captures a
// graph (SunriseGraph), both are recorded instead: launch_blocks' functor is
// copied into the graph, launch_task's f is kept by the graph and runs on
// every replay, and is destroyed with the graph. An exception thrown by device
// work is recorded as the device's sticky error and raised by the next
// synchronizing call, as asynchronous GPU errors are.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseStream.h>

#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace torch_sunrise {

namespace detail {

// What the host learns of a task it waits for (to raise a dtype error at the
// call): the task's exception, and the warnings it raised, for the host to
// raise again on the calling thread, where Python sees them as on the CPU.
struct CallResult {
  std::exception_ptr error;
  std::vector<c10::Warning> warnings;
};

struct HostTask {
  virtual ~HostTask() = default;
  virtual void run() = 0;
  HostTask* next_finished = nullptr;  // link in the list of finished tasks
  // Null: an exception of the task is the device's sticky error, and its
  // warnings go to the device thread's handler (stderr).
  std::shared_ptr<CallResult> call_result;
};

class CollectWarnings final : public c10::WarningHandler {
 public:
  explicit CollectWarnings(std::vector<c10::Warning>& into) : into_(into) {}
  void process(const c10::Warning& warning) override { into_.push_back(warning); }

 private:
  std::vector<c10::Warning>& into_;
};

// Hands a task that ran to the host for destruction; called on the device thread.
TORCH_SUNRISE_API void retire(HostTask* task) noexcept;

// Stream captures underway in the process (SunriseGraph). While there are
// none, launching pays one relaxed load for graph support.
TORCH_SUNRISE_API extern std::atomic<int> g_captures_underway;
inline bool captures_underway() noexcept { return g_captures_underway.load(std::memory_order_relaxed) != 0; }

// launch_task's path while captures are underway: a task launched on a
// capturing stream is kept by the capture (SunriseGraph.cpp).
TORCH_SUNRISE_API void launch_task_maybe_captured(const SunriseStream& stream, std::unique_ptr<HostTask> task);

template <typename F>
struct HostTaskImpl final : HostTask {
  template <typename G>
  explicit HostTaskImpl(G&& f) : f_(std::forward<G>(f)) {}
  void run() override {
    // Device work calls ATen's CPU kernels directly, never through autograd.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    f_();
  }
  F f_;
};

// Records an exception thrown by device work (`what`: "device task" or
// "device kernel") as the device's sticky error.
inline void report_async_exception(const std::exception_ptr& error, const char* what) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const c10::Error& e) {
    srReportAsyncError(srErrorLaunchFailure, e.what_without_backtrace());
  } catch (const std::exception& e) {
    srReportAsyncError(srErrorLaunchFailure, e.what());
  } catch (...) {
    const std::string message = std::string(what) + " threw an exception that is not a std::exception";
    srReportAsyncError(srErrorLaunchFailure, message.c_str());
  }
}

inline void run_host_task(void* user_data) {
  auto* task = static_cast<HostTask*>(user_data);
  // Anything is caught: a task that escaped here would never be retired, and
  // what it owns (device tensors) would leak.
  if (CallResult* result = task->call_result.get()) {
    CollectWarnings collect(result->warnings);
    const c10::WarningUtils::WarningHandlerGuard guard(&collect);
    try {
      task->run();
    } catch (...) {
      result->error = std::current_exception();
    }
  } else {
    try {
      task->run();
    } catch (...) {
      report_async_exception(std::current_exception(), "device task");
    }
  }
  retire(task);
}

template <typename F>
void block_trampoline(const srKernelContext* ctx, void* args) {
  const F& f = *static_cast<const F*>(args);
  const uint64_t index =
      ctx->blockIdx.x + uint64_t{ctx->gridDim.x} * (ctx->blockIdx.y + uint64_t{ctx->gridDim.y} * ctx->blockIdx.z);
  try {
    f(index);
  } catch (...) {
    report_async_exception(std::current_exception(), "device kernel");
  }
}

}  // namespace detail

// Destroys the tasks that finished running. A task owns what the host
// allocated for it (tensors, CPU views, their storages); destroying it on the
// device thread would free host-allocated memory from another thread, which
// makes glibc's malloc and the caching allocator's lock contend with the host
// on every small op. The host destroys them in batches instead: at its next
// launch, at synchronizations, and before reading memory statistics.
TORCH_SUNRISE_API void release_finished_tasks() noexcept;
// The same, on every 16th call: for the per-launch and per-allocation paths.
// What finished tasks own is freed a few launches later, and at once by any
// synchronization or memory statistics.
TORCH_SUNRISE_API void release_finished_tasks_now_and_then() noexcept;

// `call_result`: see detail::HostTask.
template <typename F>
void launch_task(const SunriseStream& stream, F&& f, std::shared_ptr<detail::CallResult> call_result = nullptr) {
  release_finished_tasks_now_and_then();
  using Fn = std::decay_t<F>;
  auto task = std::make_unique<detail::HostTaskImpl<Fn>>(std::forward<F>(f));
  task->call_result = std::move(call_result);
  if (C10_UNLIKELY(detail::captures_underway())) {
    detail::launch_task_maybe_captured(stream, std::move(task));
    return;
  }
  SUNRISE_CHECK(srLaunchHostFunc(stream.handle(), &detail::run_host_task, task.get()));
  task.release();  // now owned by the queued host function
}

template <typename F>
void launch_blocks(const SunriseStream& stream, uint64_t num_blocks, const F& f) {
  static_assert(std::is_trivially_copyable_v<F>, "launch_blocks copies its functor like kernel arguments");
  static_assert(sizeof(F) <= SR_MAX_KERNEL_ARGS_BYTES, "kernel functor too large");
  if (num_blocks == 0) return;
  // Grids are three-dimensional in the runtime, as on a GPU.
  srDim3 grid{1, 1, 1};
  if (num_blocks <= 0x7fffffffULL) {
    grid.x = static_cast<unsigned>(num_blocks);
  } else {
    grid.x = 65536;
    grid.y = static_cast<unsigned>((num_blocks + 65535) / 65536);
  }
  TORCH_CHECK(uint64_t{grid.x} * grid.y == num_blocks || grid.y == 1, "launch_blocks: ", num_blocks,
              " blocks do not fit a grid exactly");
  SUNRISE_CHECK(srLaunchKernel(&detail::block_trampoline<F>, grid, srDim3{1, 1, 1}, &f, sizeof(F), stream.handle()));
}

}  // namespace torch_sunrise
