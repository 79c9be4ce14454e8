// Work that makes the host wait for the device, or read device data on the
// host: Tensor.item(), copies to or from memory that is not pinned, results
// whose size depends on the data (nonzero, boolean indexing), torch.equal, ops
// that run on the CPU after synchronizing. Such work announces itself before
// it waits, as CUDA's implicit synchronizations do: a capture cannot contain
// it, and under torch.sunrise.set_sync_debug_mode it warns or raises, so that
// a user can find what makes a loop wait for the device every step. Explicit
// waits (synchronize, Stream/Event.synchronize) are not reported, as on CUDA.
#pragma once

#include <torch_sunrise/SunriseGraph.h>
#include <torch_sunrise/SunriseMacros.h>
#include <torch_sunrise/SunriseStream.h>

#include <c10/macros/Macros.h>

#include <atomic>

namespace torch_sunrise {

// torch.cuda.set_sync_debug_mode's values.
enum class SyncDebugMode : int { Default = 0, Warn = 1, Error = 2 };

TORCH_SUNRISE_API void set_sync_debug_mode(SyncDebugMode mode);
TORCH_SUNRISE_API SyncDebugMode sync_debug_mode() noexcept;

namespace detail {
TORCH_SUNRISE_API extern std::atomic<int> g_sync_debug_mode;
// Warns or raises (RuntimeError) naming `what`, as the mode says.
TORCH_SUNRISE_API void report_host_wait(const char* what);
}  // namespace detail

// Called before the host waits for `stream` (or reads its data) on behalf of
// an op: raises if the stream captures (`remedy` says what to do instead) and
// reports the wait under a sync debug mode. One relaxed load of each flag when
// neither is set.
inline void before_host_wait(const SunriseStream& stream, const char* what, const char* remedy) {
  if (C10_UNLIKELY(detail::captures_underway())) raise_if_capturing(stream, what, remedy);
  if (C10_UNLIKELY(detail::g_sync_debug_mode.load(std::memory_order_relaxed) != 0)) detail::report_host_wait(what);
}

}  // namespace torch_sunrise
