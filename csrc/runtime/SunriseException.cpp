#include <torch_sunrise/SunriseException.h>

#include <c10/util/Logging.h>

#include <sstream>

namespace torch_sunrise {
namespace {

std::string describe(srError_t err, const char* expr) {
  std::ostringstream msg;
  msg << "Sunrise error: " << srGetErrorString(err) << " (" << srGetErrorName(err) << ")";
  const char* detail = srGetLastErrorDetail();
  if (detail != nullptr && detail[0] != '\0') msg << ": " << detail;
  if (err == srErrorLaunchFailure) {
    msg << "\nDevice work fails asynchronously, so the failing op may be earlier than the one that raised; "
           "set SUNRISE_LAUNCH_BLOCKING=1 to raise at the failing op.";
  }
  msg << "\n(from " << expr << ")";
  return msg.str();
}

}  // namespace

void throw_runtime_error(srError_t err, const char* expr, const char* func, const char* file, uint32_t line) {
  // The emulated device keeps working after an asynchronous failure: clear the
  // sticky state once it has been raised so that one bad kernel does not
  // poison the rest of the process (a real GPU would need a context reset).
  if (err == srErrorLaunchFailure) (void)srGetLastError();
  const c10::SourceLocation loc{func, file, line};
  if (err == srErrorMemoryAllocation) throw c10::OutOfMemoryError(loc, describe(err, expr));
  throw c10::AcceleratorError(loc, static_cast<int32_t>(err), describe(err, expr));
}

void warn_runtime_error(srError_t err, const char* expr, const char* func, const char* file, uint32_t line) noexcept {
  try {
    TORCH_WARN("Sunrise warning at ", file, ":", line, " in ", func, ": ", describe(err, expr));
  } catch (...) {
    // Warnings must never escape noexcept code.
  }
}

}  // namespace torch_sunrise
