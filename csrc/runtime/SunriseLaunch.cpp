#include <torch_sunrise/SunriseLaunch.h>

#include <atomic>

namespace torch_sunrise {
namespace {

// A lock-free stack: device threads push, the host takes the whole list at
// once (no pop of single nodes, so there is no ABA problem).
std::atomic<detail::HostTask*> g_finished{nullptr};

}  // namespace

namespace detail {

void retire(HostTask* task) noexcept {
  HostTask* head = g_finished.load(std::memory_order_relaxed);
  do {
    task->next_finished = head;
  } while (!g_finished.compare_exchange_weak(head, task, std::memory_order_release, std::memory_order_relaxed));
}

}  // namespace detail

void release_finished_tasks() noexcept {
  if (g_finished.load(std::memory_order_relaxed) == nullptr) return;
  detail::HostTask* task = g_finished.exchange(nullptr, std::memory_order_acquire);
  while (task != nullptr) {
    detail::HostTask* next = task->next_finished;
    delete task;  // allocated by launch_task's make_unique
    task = next;
  }
}

}  // namespace torch_sunrise
