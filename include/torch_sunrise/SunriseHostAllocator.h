// Pinned (page-locked, as far as the API is concerned) host memory for
// asynchronous copies to and from sunrise devices.
#pragma once

#include <ATen/core/CachingHostAllocator.h>

namespace torch_sunrise {

at::HostAllocator* host_allocator();
// True when ptr lies in memory from the pinned allocator (any offset inside).
bool is_pinned_ptr(const void* ptr);

}  // namespace torch_sunrise
