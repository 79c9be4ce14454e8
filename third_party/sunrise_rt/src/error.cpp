#include "internal.h"

namespace sunrise_rt {
namespace {
thread_local std::string t_last_detail;
}  // namespace

srError_t fail(srError_t err, std::string detail) {
  t_last_detail = std::move(detail);
  return err;
}

srError_t ok() {
  if (!t_last_detail.empty()) t_last_detail.clear();
  return srSuccess;
}

}  // namespace sunrise_rt

using namespace sunrise_rt;

extern "C" {

const char* srGetErrorName(srError_t error) {
  switch (error) {
    case srSuccess: return "srSuccess";
    case srErrorInvalidValue: return "srErrorInvalidValue";
    case srErrorMemoryAllocation: return "srErrorMemoryAllocation";
    case srErrorInitializationError: return "srErrorInitializationError";
    case srErrorInvalidDevice: return "srErrorInvalidDevice";
    case srErrorInvalidResourceHandle: return "srErrorInvalidResourceHandle";
    case srErrorInvalidDevicePointer: return "srErrorInvalidDevicePointer";
    case srErrorInvalidMemcpyDirection: return "srErrorInvalidMemcpyDirection";
    case srErrorNotReady: return "srErrorNotReady";
    case srErrorLaunchFailure: return "srErrorLaunchFailure";
    case srErrorHostMemoryAllocation: return "srErrorHostMemoryAllocation";
    case srErrorNotSupported: return "srErrorNotSupported";
    case srErrorInvalidConfiguration: return "srErrorInvalidConfiguration";
  }
  return "srErrorUnknown";
}

const char* srGetErrorString(srError_t error) {
  switch (error) {
    case srSuccess: return "no error";
    case srErrorInvalidValue: return "invalid argument";
    case srErrorMemoryAllocation: return "out of device memory";
    case srErrorInitializationError: return "initialization error";
    case srErrorInvalidDevice: return "invalid device ordinal";
    case srErrorInvalidResourceHandle: return "invalid resource handle";
    case srErrorInvalidDevicePointer: return "invalid device pointer";
    case srErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case srErrorNotReady: return "device not ready";
    case srErrorLaunchFailure: return "unspecified launch failure";
    case srErrorHostMemoryAllocation: return "pinned host memory allocation failed";
    case srErrorNotSupported: return "operation not supported";
    case srErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unrecognized error code";
}

const char* srGetLastErrorDetail(void) { return t_last_detail.c_str(); }

srError_t srGetLastError(void) {
  Device* dev = nullptr;
  if (srError_t e = current_device(&dev)) return e;
  std::lock_guard<std::mutex> lock(dev->error_mutex);
  const srError_t err = dev->sticky();
  if (err != srSuccess) {
    t_last_detail = dev->sticky_detail;
    dev->sticky_detail.clear();
    dev->sticky_error.store(srSuccess, std::memory_order_release);
  }
  return err;
}

srError_t srPeekAtLastError(void) {
  Device* dev = nullptr;
  if (srError_t e = current_device(&dev)) return e;
  return dev->report_sticky();
}

}  // extern "C"
