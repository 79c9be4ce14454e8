#include <torch_sunrise/SunriseLaunch.h>

#include <atomic>

namespace torch_sunrise {
namespace {

// A lock-free stack: device threads push, the host takes the whole list at
// once (no pop of single nodes, so there is no ABA problem). On a cache line
// of its own (the struct fills it): device threads write it after every
// task, and host-only globals beside it (function-local static guards read
// on every launch) would move between cores with it.
struct alignas(64) FinishedTasks {
  std::atomic<detail::HostTask*> head{nullptr};
};
FinishedTasks g_finished;

// Launches since the host last looked at g_finished. Looking costs a cache
// line transfer from the device thread whenever a task finished since, so a
// launch looks only every kLaunchesPerRelease launches. Approximate under
// concurrent launches, which is harmless.
constexpr unsigned kLaunchesPerRelease = 16;
alignas(64) std::atomic<unsigned> g_launches_since_release{0};

}  // namespace

namespace detail {

void retire(HostTask* task) noexcept {
  HostTask* head = g_finished.head.load(std::memory_order_relaxed);
  do {
    task->next_finished = head;
  } while (!g_finished.head.compare_exchange_weak(head, task, std::memory_order_release, std::memory_order_relaxed));
}

}  // namespace detail

void release_finished_tasks() noexcept {
  if (g_finished.head.load(std::memory_order_relaxed) == nullptr) return;
  detail::HostTask* task = g_finished.head.exchange(nullptr, std::memory_order_acquire);
  while (task != nullptr) {
    detail::HostTask* next = task->next_finished;
    delete task;  // allocated by launch_task's make_unique
    task = next;
  }
}

void release_finished_tasks_now_and_then() noexcept {
  const unsigned n = g_launches_since_release.load(std::memory_order_relaxed) + 1;
  if (n < kLaunchesPerRelease) {
    g_launches_since_release.store(n, std::memory_order_relaxed);
    return;
  }
  g_launches_since_release.store(0, std::memory_order_relaxed);
  release_finished_tasks();
}

}  // namespace torch_sunrise
