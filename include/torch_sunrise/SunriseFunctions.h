// Device management for the sunrise device, over the runtime's API.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <c10/core/Device.h>

namespace torch_sunrise {

// Number of sunrise devices; 0 when the runtime cannot start (never throws).
TORCH_SUNRISE_API c10::DeviceIndex device_count() noexcept;
TORCH_SUNRISE_API c10::DeviceIndex current_device();
TORCH_SUNRISE_API void set_device(c10::DeviceIndex device);
// Sets the device and returns the previous one.
TORCH_SUNRISE_API c10::DeviceIndex exchange_device(c10::DeviceIndex device);
// Throws torch.AcceleratorError (CUDA's "invalid device ordinal") naming the index and the device count.
TORCH_SUNRISE_API void check_device_index(int64_t device);
// Waits for every stream of the device.
TORCH_SUNRISE_API void device_synchronize(c10::DeviceIndex device);

}  // namespace torch_sunrise
