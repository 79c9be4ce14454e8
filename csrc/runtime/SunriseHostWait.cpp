#include <torch_sunrise/SunriseHostWait.h>

#include <c10/util/Exception.h>

namespace torch_sunrise {

namespace detail {

std::atomic<int> g_sync_debug_mode{0};

void report_host_wait(const char* what) {
  const SyncDebugMode mode = sync_debug_mode();
  TORCH_CHECK(mode != SyncDebugMode::Error, "called a synchronizing sunrise operation: ", what,
              " (torch.sunrise.set_sync_debug_mode('error') is set)");
  if (mode == SyncDebugMode::Warn) TORCH_WARN("called a synchronizing sunrise operation: ", what);
}

}  // namespace detail

void set_sync_debug_mode(SyncDebugMode mode) {
  detail::g_sync_debug_mode.store(static_cast<int>(mode), std::memory_order_relaxed);
}

SyncDebugMode sync_debug_mode() noexcept {
  return static_cast<SyncDebugMode>(detail::g_sync_debug_mode.load(std::memory_order_relaxed));
}

}  // namespace torch_sunrise
