// Pinned host memory for sunrise: PyTorch's generic caching host allocator
// (power-of-two size classes, blocks kept until the events of every stream that
// used them have completed), over the runtime's srMallocHost/srFreeHost.
// An asynchronous copy from pinned memory records its stream on the block, so
// the buffer is not handed out again before that copy has run.
#include <torch_sunrise/SunriseEvent.h>
#include <torch_sunrise/SunriseHostAllocator.h>
#include <torch_sunrise/SunriseStream.h>

#include <ATen/core/CachingHostAllocator.h>

namespace torch_sunrise {
namespace {

struct SunriseHostAllocatorImpl final : public at::CachingHostAllocatorImpl<SunriseStream, SunriseEvent> {
  void allocate_host_memory(size_t size, void** ptr) override { SUNRISE_CHECK(srMallocHost(ptr, size)); }

  void free_block(at::HostBlock<SunriseStream>* block) override { SUNRISE_CHECK(srFreeHost(block->ptr_)); }

  void record_stream(std::optional<std::vector<SunriseEvent>>& events, SunriseStream stream) override {
    SunriseEvent event;
    event.record(stream);
    events->push_back(std::move(event));
  }

  // An event recorded into a graph's capture completes only when a replay
  // runs it: for the cache, its block stays in use.
  bool query_event(SunriseEvent& event) override {
    if (event.handle() == nullptr) return true;
    const srError_t err = srEventQuery(event.handle());
    if (err == srErrorNotReady || err == srErrorCapturedEvent) return false;
    SUNRISE_CHECK(err);
    return true;
  }

  SunriseStream get_current_stream() const override { return getCurrentSunriseStream(); }

  // Blocks used by a capture then belong to it (the generic allocator's pools).
  bool stream_is_capturing(SunriseStream stream) const override { return stream.is_capturing(); }

  // The background event thread only pays off with many in-flight pinned
  // blocks; on a 2-core machine it competes with the device threads.
  bool pinned_use_background_threads() override { return false; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
};

DECLARE_HOST_ALLOCATOR(SunriseHostAllocator, SunriseHostAllocatorImpl, sunrise_host_deleter, g_host_allocator)
REGISTER_HOST_ALLOCATOR(at::kPrivateUse1, &g_host_allocator)

}  // namespace

at::HostAllocator* getCachingHostAllocator() { return &g_host_allocator; }

bool is_pinned_ptr(const void* ptr) {
  srPointerAttributes attr{};
  if (srPointerGetAttributes(&attr, ptr) != srSuccess) return false;
  return attr.type == srMemoryTypeHost;
}

}  // namespace torch_sunrise
