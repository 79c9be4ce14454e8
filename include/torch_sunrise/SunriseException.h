// One error-check macro family for runtime calls, as c10/cuda does it:
//   SUNRISE_CHECK(expr)  throws a c10 error carrying the runtime's error name,
//                        its message and the runtime's detail for this call;
//   SUNRISE_WARN(expr)   only warns: for destructors and noexcept code.
// Out-of-memory becomes c10::OutOfMemoryError (torch.OutOfMemoryError in
// Python); every other runtime failure becomes c10::AcceleratorError
// (torch.AcceleratorError, a RuntimeError) with the runtime's error code.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <c10/util/Exception.h>

#include <sunrise_rt.h>

namespace torch_sunrise {

TORCH_SUNRISE_API [[noreturn]] void throw_runtime_error(srError_t err, const char* expr, const char* func, const char* file,
                                      uint32_t line);
TORCH_SUNRISE_API void warn_runtime_error(srError_t err, const char* expr, const char* func, const char* file, uint32_t line) noexcept;

}  // namespace torch_sunrise

#define SUNRISE_CHECK(EXPR)                                                                \
  do {                                                                                     \
    const srError_t sunrise_err_ = (EXPR);                                                 \
    if (C10_UNLIKELY(sunrise_err_ != srSuccess)) {                                         \
      ::torch_sunrise::throw_runtime_error(sunrise_err_, #EXPR, __func__, __FILE__, __LINE__); \
    }                                                                                      \
  } while (0)

#define SUNRISE_WARN(EXPR)                                                                 \
  do {                                                                                     \
    const srError_t sunrise_err_ = (EXPR);                                                 \
    if (C10_UNLIKELY(sunrise_err_ != srSuccess)) {                                         \
      ::torch_sunrise::warn_runtime_error(sunrise_err_, #EXPR, __func__, __FILE__, __LINE__); \
    }                                                                                      \
  } while (0)
