// Pinned (page-locked, as far as the API is concerned) host memory for
// asynchronous copies to and from sunrise devices.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <ATen/core/CachingHostAllocator.h>

namespace torch_sunrise {

TORCH_SUNRISE_API at::HostAllocator* getCachingHostAllocator();
// True when ptr lies in memory from the pinned allocator (any offset inside).
TORCH_SUNRISE_API bool is_pinned_ptr(const void* ptr);

}  // namespace torch_sunrise
