// SunriseStream: a checked value type over c10::Stream, as CUDAStream is.
//
// Stream ids per device: 0 is the default stream; 1..kStreamsPerPool are the
// normal-priority pool and kStreamsPerPool+1..2*kStreamsPerPool the
// high-priority pool. Pool streams are created once per device on first use
// and handed out round-robin, so streams are cheap to "create" and never leak.
// The current stream is per host thread and per device.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <c10/core/Stream.h>

#include <sunrise_rt.h>

#include <tuple>

namespace torch_sunrise {

constexpr int kStreamsPerPool = 32;

class TORCH_SUNRISE_API SunriseStream {
 public:
  explicit SunriseStream(c10::Stream stream);

  bool operator==(const SunriseStream& other) const noexcept { return stream_ == other.stream_; }
  bool operator!=(const SunriseStream& other) const noexcept { return stream_ != other.stream_; }

  operator c10::Stream() const { return stream_; }  // NOLINT: implicit by design, as CUDAStream
  c10::Stream unwrap() const { return stream_; }
  c10::Device device() const { return stream_.device(); }
  c10::DeviceIndex device_index() const { return stream_.device_index(); }
  c10::StreamId id() const { return stream_.id(); }

  // The runtime handle; work submitted to it runs in this stream's order.
  srStream_t handle() const;
  int priority() const;
  // True when all work submitted so far has finished.
  bool query() const;
  // True while the stream captures into a graph (its work is recorded, not run).
  bool is_capturing() const { return capture_id() != 0; }
  // The runtime's id of the capture the stream takes part in, 0 when none.
  unsigned long long capture_id() const;
  void synchronize() const;

  // (least, greatest) priority; lower is more urgent, as in CUDA.
  static std::tuple<int, int> priority_range() { return {0, -1}; }

 private:
  c10::Stream stream_;
};

TORCH_SUNRISE_API SunriseStream getStreamFromPool(bool is_high_priority = false, c10::DeviceIndex device = -1);
TORCH_SUNRISE_API SunriseStream getStreamFromPool(int priority, c10::DeviceIndex device = -1);
TORCH_SUNRISE_API SunriseStream getDefaultSunriseStream(c10::DeviceIndex device = -1);
TORCH_SUNRISE_API SunriseStream getCurrentSunriseStream(c10::DeviceIndex device = -1);
TORCH_SUNRISE_API void setCurrentSunriseStream(SunriseStream stream);

}  // namespace torch_sunrise

namespace std {
template <>
struct hash<torch_sunrise::SunriseStream> {
  size_t operator()(const torch_sunrise::SunriseStream& s) const noexcept { return std::hash<c10::Stream>{}(s.unwrap()); }
};
}  // namespace std
