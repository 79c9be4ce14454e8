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
    case srErrorStreamCaptureUnsupported: return "srErrorStreamCaptureUnsupported";
    case srErrorStreamCaptureInvalidated: return "srErrorStreamCaptureInvalidated";
    case srErrorStreamCaptureUnjoined: return "srErrorStreamCaptureUnjoined";
    case srErrorStreamCaptureIsolation: return "srErrorStreamCaptureIsolation";
    case srErrorStreamCaptureUnmatched: return "srErrorStreamCaptureUnmatched";
    case srErrorStreamCaptureWrongThread: return "srErrorStreamCaptureWrongThread";
    case srErrorCapturedEvent: return "srErrorCapturedEvent";
    case srErrorIllegalState: return "srErrorIllegalState";
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
    case srErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case srErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case srErrorStreamCaptureUnjoined: return "capture ended with a forked stream that was not joined";
    case srErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case srErrorStreamCaptureUnmatched: return "capture ended on a stream that did not begin it";
    case srErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    case srErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
    case srErrorIllegalState: return "operation not permitted in the current state";
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
