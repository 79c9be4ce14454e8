// The sunrise caching device allocator (see SunriseCachingAllocator.cpp for the
// design note). Registered as the PrivateUse1 allocator, so at::empty on a
// sunrise device, torch.accelerator.memory_* and torch.sunrise.memory_* all go
// through it.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <c10/core/CachingDeviceAllocator.h>

#include <torch_sunrise/SunriseStream.h>

#include <functional>
#include <vector>

namespace torch_sunrise::caching_allocator {

using c10::CachingDeviceAllocator::CreateContextFn;
using c10::CachingDeviceAllocator::DeviceStats;
using c10::CachingDeviceAllocator::RecordContext;
using c10::CachingDeviceAllocator::SegmentInfo;
using c10::CachingDeviceAllocator::TraceEntry;

TORCH_SUNRISE_API c10::DeviceAllocator* get();

// Marks the memory as used by `stream`: when freed, the block is not reused
// until the work queued on that stream up to the free has finished.
TORCH_SUNRISE_API void recordStream(const c10::DataPtr& data_ptr, SunriseStream stream);
// Queued device work does not keep the blocks it uses: as on CUDA, a block the
// host frees is reused at once by later allocations on its own stream, which
// stream order puts after that work. Work queued on another stream would not
// be ordered so; launches call this for each operand, which records such a use
// (as Tensor.record_stream would) and costs a comparison otherwise.
TORCH_SUNRISE_API void recordUseOnStream(const c10::DataPtr& data_ptr, srStream_t stream);
// Returns every cached, unused segment of every device to the runtime.
TORCH_SUNRISE_API void emptyCache();
TORCH_SUNRISE_API DeviceStats getDeviceStats(c10::DeviceIndex device);
TORCH_SUNRISE_API void resetAccumulatedStats(c10::DeviceIndex device);
TORCH_SUNRISE_API void resetPeakStats(c10::DeviceIndex device);
// Segments and their blocks, for memory_snapshot().
TORCH_SUNRISE_API std::vector<SegmentInfo> snapshot();
// Memory history (torch.sunrise.memory._record_memory_history): with
// `record_events` every device keeps its last `max_entries` allocator events
// (turning it off forgets them); `gather` makes the stacks kept with live
// blocks and with events of level `when` or below (NEVER: none).
TORCH_SUNRISE_API void recordHistory(bool record_events, CreateContextFn gather, size_t max_entries, RecordContext when,
                                     bool clear_history);
// Each device's history, oldest first.
TORCH_SUNRISE_API std::vector<std::vector<TraceEntry>> traces();
// Caps what this process may reserve on `device` to fraction * capacity.
TORCH_SUNRISE_API void setMemoryFraction(double fraction, c10::DeviceIndex device);
TORCH_SUNRISE_API double getMemoryFraction(c10::DeviceIndex device);

// Private pools for graph capture (see the allocator's design note): from
// begin to end, allocations on `device` from streams `filter` accepts come
// from `pool`; releasePool drops one graph's use of it.
TORCH_SUNRISE_API void beginAllocateToPool(c10::DeviceIndex device, c10::MempoolId_t pool,
                                           std::function<bool(srStream_t)> filter);
TORCH_SUNRISE_API void endAllocateToPool(c10::DeviceIndex device, c10::MempoolId_t pool);
TORCH_SUNRISE_API void releasePool(c10::DeviceIndex device, c10::MempoolId_t pool);
TORCH_SUNRISE_API int getPoolUseCount(c10::DeviceIndex device, c10::MempoolId_t pool);

}  // namespace torch_sunrise::caching_allocator
