// RAII guards for the sunrise device and its streams: thin wrappers over the
// generic c10 guard templates, as CUDAGuard.h does.
#pragma once

#include <c10/core/impl/InlineDeviceGuard.h>
#include <c10/core/impl/InlineStreamGuard.h>

#include <torch_sunrise/SunriseStream.h>
#include <torch_sunrise/impl/SunriseGuardImpl.h>

namespace torch_sunrise {

// Sets the current sunrise device for its scope and restores it after.
struct SunriseGuard {
  explicit SunriseGuard(c10::DeviceIndex device_index) : guard_(device_index) {}
  explicit SunriseGuard(c10::Device device) : guard_(device) {}
  // Copying or moving would restore the device twice.
  SunriseGuard(const SunriseGuard&) = delete;
  SunriseGuard& operator=(const SunriseGuard&) = delete;
  SunriseGuard(SunriseGuard&&) = delete;
  SunriseGuard& operator=(SunriseGuard&&) = delete;

  c10::Device original_device() const { return guard_.original_device(); }
  c10::Device current_device() const { return guard_.current_device(); }

 private:
  c10::impl::InlineDeviceGuard<impl::SunriseGuardImpl> guard_;
};

// Like SunriseGuard, but a device of std::nullopt or a non-sunrise device is a no-op.
struct OptionalSunriseGuard {
  OptionalSunriseGuard() = default;
  explicit OptionalSunriseGuard(std::optional<c10::Device> device) : guard_(device) {}
  OptionalSunriseGuard(const OptionalSunriseGuard&) = delete;
  OptionalSunriseGuard& operator=(const OptionalSunriseGuard&) = delete;
  OptionalSunriseGuard(OptionalSunriseGuard&&) = delete;
  OptionalSunriseGuard& operator=(OptionalSunriseGuard&&) = delete;

 private:
  c10::impl::InlineOptionalDeviceGuard<impl::SunriseGuardImpl> guard_;
};

// Sets the current stream (and device) for its scope and restores both after.
struct SunriseStreamGuard {
  explicit SunriseStreamGuard(c10::Stream stream) : guard_(stream) {}
  SunriseStreamGuard(const SunriseStreamGuard&) = delete;
  SunriseStreamGuard& operator=(const SunriseStreamGuard&) = delete;
  SunriseStreamGuard(SunriseStreamGuard&&) = delete;
  SunriseStreamGuard& operator=(SunriseStreamGuard&&) = delete;

  SunriseStream original_stream() const { return SunriseStream(guard_.original_stream()); }
  SunriseStream current_stream() const { return SunriseStream(guard_.current_stream()); }

 private:
  c10::impl::InlineStreamGuard<impl::SunriseGuardImpl> guard_;
};

}  // namespace torch_sunrise
