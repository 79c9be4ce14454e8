// Device management for the sunrise device, over the runtime's API.
#pragma once

#include <c10/core/Device.h>

namespace torch_sunrise {

// Number of sunrise devices; 0 when the runtime cannot start (never throws).
c10::DeviceIndex device_count() noexcept;
c10::DeviceIndex current_device();
void set_device(c10::DeviceIndex device);
// Sets the device and returns the previous one.
c10::DeviceIndex exchange_device(c10::DeviceIndex device);
// Throws an IndexError naming the index and the device count.
void check_device_index(c10::DeviceIndex device);
// Waits for every stream of the device.
void device_synchronize(c10::DeviceIndex device);

}  // namespace torch_sunrise
