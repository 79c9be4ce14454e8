// PrivateUse1 hooks: what PyTorch core asks of any accelerator — availability,
// devices, the default generator, pinned memory, device-of-pointer, storage
// resize.
#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGenerator.h>
#include <torch_sunrise/SunriseHostAllocator.h>
#include <torch_sunrise/SunriseStorage.h>

#include <ATen/detail/PrivateUse1HooksInterface.h>

namespace torch_sunrise {
namespace {

struct SunriseHooks final : public at::PrivateUse1HooksInterface {
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return device_count() > 0; }
  bool hasPrimaryContext(c10::DeviceIndex device_index) const override {
    return device_index >= 0 && device_index < device_count();
  }
  void init() const override {
    // Starts the runtime; an invalid environment surfaces here, clearly.
    int n = 0;
    SUNRISE_CHECK(srGetDeviceCount(&n));
  }
  c10::DeviceIndex deviceCount() const override { return device_count(); }
  void setCurrentDevice(c10::DeviceIndex device) const override { set_device(device); }
  c10::DeviceIndex getCurrentDevice() const override { return current_device(); }
  c10::DeviceIndex exchangeDevice(c10::DeviceIndex device) const override { return exchange_device(device); }
  c10::DeviceIndex maybeExchangeDevice(c10::DeviceIndex device) const override { return exchange_device(device); }

  const at::Generator& getDefaultGenerator(c10::DeviceIndex device_index) const override {
    return getDefaultSunriseGenerator(device_index);
  }
  at::Generator getNewGenerator(c10::DeviceIndex device_index) const override { return createSunriseGenerator(device_index); }

  bool isPinnedPtr(const void* data) const override { return is_pinned_ptr(data); }
  c10::Allocator* getPinnedMemoryAllocator() const override { return getCachingHostAllocator(); }

  c10::Device getDeviceFromPtr(void* data) const override {
    srPointerAttributes attr{};
    SUNRISE_CHECK(srPointerGetAttributes(&attr, data));
    TORCH_CHECK(attr.type == srMemoryTypeDevice, "Pointer ", data, " is not sunrise device memory");
    return c10::Device(c10::DeviceType::PrivateUse1, static_cast<c10::DeviceIndex>(attr.device));
  }

  void resizePrivateUse1Bytes(const c10::Storage& storage, size_t new_bytes) const override {
    resize_storage_bytes(storage.unsafeGetStorageImpl(), new_bytes);
  }
};

struct Registerer {
  Registerer() {
    static SunriseHooks hooks;
    at::RegisterPrivateUse1HooksInterface(&hooks);
  }
};
const Registerer g_registerer;

}  // namespace
}  // namespace torch_sunrise
