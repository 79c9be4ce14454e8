// SunriseEvent: a move-only RAII owner of a runtime event, created lazily on
// first record (as CUDAEvent is), so that default-constructed events are free.
#pragma once

#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseStream.h>

#include <utility>

namespace torch_sunrise {

class SunriseEvent {
 public:
  explicit SunriseEvent(unsigned flags = srEventDisableTiming) : flags_(flags) {}
  ~SunriseEvent() {
    if (event_ != nullptr) SUNRISE_WARN(srEventDestroy(event_));
  }
  SunriseEvent(const SunriseEvent&) = delete;  // one owner per runtime event
  SunriseEvent& operator=(const SunriseEvent&) = delete;
  SunriseEvent(SunriseEvent&& other) noexcept { swap(other); }
  SunriseEvent& operator=(SunriseEvent&& other) noexcept {
    if (this != &other) swap(other);
    return *this;
  }

  void record(const SunriseStream& stream) {
    if (event_ == nullptr) SUNRISE_CHECK(srEventCreateWithFlags(&event_, flags_));
    SUNRISE_CHECK(srEventRecord(event_, stream.handle()));
  }
  // True once the recorded work has finished (or nothing was recorded).
  bool query() const {
    if (event_ == nullptr) return true;
    const srError_t err = srEventQuery(event_);
    if (err == srErrorNotReady) return false;
    SUNRISE_CHECK(err);
    return true;
  }
  void synchronize() const {
    if (event_ != nullptr) SUNRISE_CHECK(srEventSynchronize(event_));
  }
  // Makes future work on `stream` wait for the recorded work.
  void block(const SunriseStream& stream) const {
    if (event_ != nullptr) SUNRISE_CHECK(srStreamWaitEvent(stream.handle(), event_, 0));
  }
  srEvent_t handle() const { return event_; }

 private:
  void swap(SunriseEvent& other) noexcept {
    std::swap(flags_, other.flags_);
    std::swap(event_, other.event_);
  }

  unsigned flags_ = srEventDisableTiming;
  srEvent_t event_ = nullptr;
};

}  // namespace torch_sunrise
