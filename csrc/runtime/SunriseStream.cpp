#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseStream.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseLaunch.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

namespace torch_sunrise {
namespace {

constexpr int kMaxDevices = 64;
constexpr c10::StreamId kMaxStreamId = 2 * kStreamsPerPool;

// Whole cache lines: read on every launch, so never beside memory that a
// device thread writes.
struct alignas(64) DeviceStreams {
  std::once_flag pool_once;
  std::atomic<bool> pool_ready{false};  // every launch asks; std::call_once costs a TLS round trip
  srStream_t default_stream = nullptr;
  std::array<srStream_t, 2 * kStreamsPerPool> pool{};  // [normal..., high...]
  std::atomic<uint32_t> next_normal{0};
  std::atomic<uint32_t> next_high{0};
};

DeviceStreams& streams_of(c10::DeviceIndex device) {
  // Leaked on purpose: streams outlive static destruction (device threads).
  static auto& all = *std::make_unique<std::array<DeviceStreams, kMaxDevices>>().release();
  return all[static_cast<size_t>(device)];
}

void init_pool(c10::DeviceIndex device, DeviceStreams& s) {
  if (s.pool_ready.load(std::memory_order_acquire)) return;
  std::call_once(s.pool_once, [&] {
    SUNRISE_CHECK(srDeviceGetDefaultStream(device, &s.default_stream));
    const SunriseGuard guard(device);  // streams are created on the current device
    for (int i = 0; i < 2 * kStreamsPerPool; ++i) {
      const int priority = i < kStreamsPerPool ? 0 : -1;
      SUNRISE_CHECK(srStreamCreateWithPriority(&s.pool[static_cast<size_t>(i)], srStreamNonBlocking, priority));
    }
    s.pool_ready.store(true, std::memory_order_release);
  });
}

c10::DeviceIndex resolve(c10::DeviceIndex device) {
  if (device < 0) return current_device();
  check_device_index(device);
  return device;
}

thread_local std::array<c10::StreamId, kMaxDevices> t_current_stream{};

}  // namespace

SunriseStream::SunriseStream(c10::Stream stream) : stream_(stream) {
  TORCH_CHECK(stream_.device_type() == c10::DeviceType::PrivateUse1, "Expected a sunrise stream, got a ",
              stream_.device_type(), " stream");
  TORCH_CHECK(stream_.id() >= 0 && stream_.id() <= kMaxStreamId, "Invalid sunrise stream id ", stream_.id(),
              "; sunrise streams come from torch.sunrise.Stream() or the current/default stream");
}

srStream_t SunriseStream::handle() const {
  const c10::DeviceIndex device = stream_.device_index();
  check_device_index(device);
  DeviceStreams& s = streams_of(device);
  init_pool(device, s);
  if (stream_.id() == 0) return s.default_stream;
  return s.pool[static_cast<size_t>(stream_.id() - 1)];
}

int SunriseStream::priority() const { return stream_.id() > kStreamsPerPool ? -1 : 0; }

bool SunriseStream::query() const {
  const srError_t err = srStreamQuery(handle());
  if (err == srErrorNotReady) return false;
  SUNRISE_CHECK(err);
  return true;
}

unsigned long long SunriseStream::capture_id() const {
  if (!detail::captures_underway()) return 0;
  srStreamCaptureStatus status = srStreamCaptureStatusNone;
  unsigned long long id = 0;
  SUNRISE_CHECK(srStreamGetCaptureInfo(handle(), &status, &id));
  return status == srStreamCaptureStatusNone ? 0 : id;
}

void SunriseStream::synchronize() const {
  const srError_t err = srStreamSynchronize(handle());
  release_finished_tasks();
  SUNRISE_CHECK(err);
}

SunriseStream getStreamFromPool(bool is_high_priority, c10::DeviceIndex device) {
  return getStreamFromPool(is_high_priority ? -1 : 0, device);
}

SunriseStream getStreamFromPool(int priority, c10::DeviceIndex device) {
  device = resolve(device);
  DeviceStreams& s = streams_of(device);
  init_pool(device, s);
  const bool high = priority < 0;
  const uint32_t n = (high ? s.next_high : s.next_normal).fetch_add(1, std::memory_order_relaxed) % kStreamsPerPool;
  const c10::StreamId id = 1 + (high ? kStreamsPerPool : 0) + static_cast<c10::StreamId>(n);
  return SunriseStream(c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, device), id));
}

SunriseStream getDefaultSunriseStream(c10::DeviceIndex device) {
  device = resolve(device);
  return SunriseStream(c10::Stream(c10::Stream::DEFAULT, c10::Device(c10::DeviceType::PrivateUse1, device)));
}

SunriseStream getCurrentSunriseStream(c10::DeviceIndex device) {
  device = resolve(device);
  return SunriseStream(c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, device),
                                   t_current_stream[static_cast<size_t>(device)]));
}

void setCurrentSunriseStream(SunriseStream stream) {
  check_device_index(stream.device_index());
  t_current_stream[static_cast<size_t>(stream.device_index())] = stream.id();
}

}  // namespace torch_sunrise
