#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseStream.h>
#include <torch_sunrise/impl/SunriseGuardImpl.h>

namespace torch_sunrise::impl {

SunriseGuardImpl::SunriseGuardImpl(c10::DeviceType t) {
  TORCH_CHECK(t == c10::DeviceType::PrivateUse1, "SunriseGuardImpl initialized with non-sunrise device type ", t);
}

c10::Device SunriseGuardImpl::exchangeDevice(c10::Device d) const {
  TORCH_CHECK(d.is_privateuseone(), "Expected a sunrise device, got ", d);
  return c10::Device(c10::DeviceType::PrivateUse1, exchange_device(d.index()));
}

c10::Device SunriseGuardImpl::getDevice() const { return c10::Device(c10::DeviceType::PrivateUse1, current_device()); }

void SunriseGuardImpl::setDevice(c10::Device d) const {
  TORCH_CHECK(d.is_privateuseone(), "Expected a sunrise device, got ", d);
  set_device(d.index());
}

void SunriseGuardImpl::uncheckedSetDevice(c10::Device d) const noexcept { SUNRISE_WARN(srSetDevice(d.index())); }

c10::Stream SunriseGuardImpl::getStream(c10::Device d) const { return getCurrentSunriseStream(d.index()).unwrap(); }

c10::Stream SunriseGuardImpl::getDefaultStream(c10::Device d) const { return getDefaultSunriseStream(d.index()); }

c10::Stream SunriseGuardImpl::getNewStream(c10::Device d, int priority) const {
  return getStreamFromPool(priority, d.index());
}

c10::Stream SunriseGuardImpl::getStreamFromGlobalPool(c10::Device d, bool isHighPriority) const {
  return getStreamFromPool(isHighPriority, d.index());
}

c10::Stream SunriseGuardImpl::exchangeStream(c10::Stream s) const {
  const SunriseStream stream(s);
  const SunriseStream previous = getCurrentSunriseStream(s.device_index());
  setCurrentSunriseStream(stream);
  return previous.unwrap();
}

void* SunriseGuardImpl::getStreamNativeHandle(const c10::Stream s) const { return SunriseStream(s).handle(); }

bool SunriseGuardImpl::queryStream(const c10::Stream& stream) const { return SunriseStream(stream).query(); }

void SunriseGuardImpl::synchronizeStream(const c10::Stream& stream) const { SunriseStream(stream).synchronize(); }

void SunriseGuardImpl::synchronizeDevice(const c10::DeviceIndex device_index) const {
  device_synchronize(device_index < 0 ? current_device() : device_index);
}

c10::DeviceIndex SunriseGuardImpl::deviceCount() const noexcept { return device_count(); }

c10::DeviceCapability SunriseGuardImpl::getDeviceCapability(c10::Device d) const {
  check_device_index(d.has_index() ? d.index() : current_device());
  // Every dtype the CPU computes with; quantized tensors have no sunrise backend.
  c10::DeviceCapability cap;
  auto& types = cap.capability_data.supported_scalar_types;
  types.has_QInt8 = false;
  types.has_QUInt8 = false;
  types.has_QInt32 = false;
  types.has_QUInt4x2 = false;
  types.has_QUInt2x4 = false;
  return cap;
}

void SunriseGuardImpl::destroyEvent(void* event, const c10::DeviceIndex /*device_index*/) const noexcept {
  if (event == nullptr) return;
  SUNRISE_WARN(srEventDestroy(static_cast<srEvent_t>(event)));
}

void SunriseGuardImpl::record(void** event, const c10::Stream& stream, const c10::DeviceIndex device_index,
                              const c10::EventFlag flag) const {
  TORCH_CHECK(device_index == -1 || device_index == stream.device_index(), "Event device index ",
              static_cast<int>(device_index), " does not match recording stream's device index ",
              static_cast<int>(stream.device_index()), ".");
  if (*event == nullptr) {
    // PYTORCH_DEFAULT events skip timing (cheaper), as CUDA's do.
    const unsigned flags = flag == c10::EventFlag::BACKEND_DEFAULT ? srEventDefault : srEventDisableTiming;
    srEvent_t created = nullptr;
    SUNRISE_CHECK(srEventCreateWithFlags(&created, flags));
    *event = created;
  }
  SUNRISE_CHECK(srEventRecord(static_cast<srEvent_t>(*event), SunriseStream(stream).handle()));
}

void SunriseGuardImpl::block(void* event, const c10::Stream& stream) const {
  if (event == nullptr) return;
  SUNRISE_CHECK(srStreamWaitEvent(SunriseStream(stream).handle(), static_cast<srEvent_t>(event), 0));
}

bool SunriseGuardImpl::queryEvent(void* event) const {
  if (event == nullptr) return true;
  const srError_t err = srEventQuery(static_cast<srEvent_t>(event));
  if (err == srErrorNotReady) return false;
  SUNRISE_CHECK(err);
  return true;
}

void SunriseGuardImpl::synchronizeEvent(void* event) const {
  if (event == nullptr) return;
  SUNRISE_CHECK(srEventSynchronize(static_cast<srEvent_t>(event)));
}

double SunriseGuardImpl::elapsedTime(void* event1, void* event2, const c10::DeviceIndex /*device_index*/) const {
  TORCH_CHECK(event1 && event2, "Both events must be recorded before calculating elapsed time.");
  float ms = 0;
  SUNRISE_CHECK(srEventElapsedTime(&ms, static_cast<srEvent_t>(event1), static_cast<srEvent_t>(event2)));
  return static_cast<double>(ms);
}

void SunriseGuardImpl::recordDataPtrOnStream(const c10::DataPtr& data_ptr, const c10::Stream& stream) const {
  caching_allocator::recordStream(data_ptr, SunriseStream(stream));
}

C10_REGISTER_GUARD_IMPL(PrivateUse1, SunriseGuardImpl);

}  // namespace torch_sunrise::impl
