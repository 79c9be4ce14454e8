#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseLaunch.h>

namespace torch_sunrise {

c10::DeviceIndex device_count() noexcept {
  static const c10::DeviceIndex count = [] {
    int n = 0;
    if (srGetDeviceCount(&n) != srSuccess) return c10::DeviceIndex{0};
    return static_cast<c10::DeviceIndex>(n);
  }();
  return count;
}

// An invalid index is CUDA's "invalid device ordinal": torch.AcceleratorError,
// a RuntimeError, which code written for CUDA catches.
void check_device_index(int64_t device) {
  const int64_t count = device_count();
  if (C10_LIKELY(device >= 0 && device < count)) return;
  throw c10::AcceleratorError({__func__, __FILE__, static_cast<uint32_t>(__LINE__)}, srErrorInvalidDevice,
                              c10::str("invalid device ordinal: sunrise:", device, " is not a valid device: there ",
                                       count == 1 ? "is " : "are ", count, " sunrise device", count == 1 ? "" : "s",
                                       " (indices 0..", count - 1, "; SUNRISE_DEVICE_COUNT sets how many)"));
}

c10::DeviceIndex current_device() {
  int d = 0;
  SUNRISE_CHECK(srGetDevice(&d));
  return static_cast<c10::DeviceIndex>(d);
}

void set_device(c10::DeviceIndex device) {
  check_device_index(device);
  SUNRISE_CHECK(srSetDevice(device));
}

c10::DeviceIndex exchange_device(c10::DeviceIndex device) {
  const c10::DeviceIndex previous = current_device();
  if (device != previous) set_device(device);
  return previous;
}

void device_synchronize(c10::DeviceIndex device) {
  check_device_index(device);
  // The error is read (and its sticky state cleared) from the current device,
  // so it is raised inside the guard.
  const SunriseGuard guard(device);
  const srError_t err = srDeviceSynchronize();
  release_finished_tasks();
  SUNRISE_CHECK(err);
}

}  // namespace torch_sunrise
