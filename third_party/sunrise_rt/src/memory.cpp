// Device and pinned memory, the pointer registry, copies and sets.
//
// Device memory is an anonymous private mapping with MAP_NORESERVE: capacity is
// accounted by the runtime, and pages are only backed once written. The
// registry maps address ranges to (kind, device) so that every copy can check
// its direction and bounds before it is queued.
#include "compute_pool.h"
#include "internal.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <shared_mutex>
#include <sstream>

namespace sunrise_rt {
namespace {

std::shared_mutex g_registry_mutex;
std::map<uintptr_t, AllocationInfo>& registry() {
  static auto& m = *std::make_unique<std::map<uintptr_t, AllocationInfo>>().release();
  return m;
}

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGE_SIZE));
  return p;
}

size_t round_to_pages(size_t n) { return (n + page_size() - 1) / page_size() * page_size(); }

std::string hex(const void* p) {
  std::ostringstream s;
  s << p;
  return s.str();
}

std::string bytes_text(size_t n) {
  std::ostringstream s;
  if (n >= (size_t{1} << 30)) s << static_cast<double>(n) / double(size_t{1} << 30) << " GiB";
  else if (n >= (size_t{1} << 20)) s << static_cast<double>(n) / double(size_t{1} << 20) << " MiB";
  else s << n << " bytes";
  return s.str();
}

void* map_pages(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// Large copies are split into chunks run by the compute units, which is what
// lets device copies reach more than one core's memory bandwidth.
constexpr size_t kCopyChunkBytes = size_t{4} << 20;
constexpr size_t kSplitCopyThreshold = size_t{8} << 20;

struct CopyArgs {
  char* dst;
  const char* src;
  size_t count;
  int value;
  bool is_set;
};

void copy_chunk_kernel(const srKernelContext* ctx, void* raw) {
  const auto* a = static_cast<const CopyArgs*>(raw);
  const size_t begin = size_t{ctx->blockIdx.x} * kCopyChunkBytes;
  const size_t n = std::min(kCopyChunkBytes, a->count - begin);
  if (a->is_set) std::memset(a->dst + begin, a->value, n);
  else std::memcpy(a->dst + begin, a->src + begin, n);
}

bool overlaps(const CopyArgs& a) {
  return !a.is_set && a.dst < a.src + a.count && a.src < a.dst + a.count;
}

void execute_chunked(Device* dev, CopyArgs args) {
  // Overlapping ranges need memmove's ordering, which chunks would break.
  if (args.count < kSplitCopyThreshold || dev->prop.multiProcessorCount == 1 || overlaps(args)) {
    if (args.is_set) std::memset(args.dst, args.value, args.count);
    else if (args.count > 0 && args.dst != args.src) std::memmove(args.dst, args.src, args.count);
    return;
  }
  auto job = std::make_shared<KernelJob>();
  job->kernel = copy_chunk_kernel;
  job->args = &args;
  job->device = dev->index;
  job->grid = {static_cast<unsigned>((args.count + kCopyChunkBytes - 1) / kCopyChunkBytes), 1, 1};
  job->total_blocks = job->grid.x;
  dev->compute_pool().run(job);
}

// Checks that [ptr, ptr+count) lies inside one live allocation of `type`, or in
// unregistered host memory when type is srMemoryTypeUnregistered/Host.
srError_t check_range(const void* ptr, size_t count, bool want_device, const char* what, AllocationInfo* info) {
  if (ptr == nullptr && count > 0) return fail(srErrorInvalidValue, std::string(what) + " pointer is NULL");
  const bool found = find_allocation(ptr, info);
  const bool is_device = found && info->type == srMemoryTypeDevice;
  if (want_device && found && !is_device) {
    return fail(srErrorInvalidMemcpyDirection,
                std::string(what) + " pointer " + hex(ptr) + " is pinned host memory but the copy kind says device");
  }
  if (want_device && !is_device) {
    return fail(srErrorInvalidValue, std::string(what) + " pointer " + hex(ptr) +
                                         " is not live device memory (never allocated with srMalloc, or already freed)");
  }
  if (!want_device && is_device) {
    return fail(srErrorInvalidMemcpyDirection,
                std::string(what) + " pointer " + hex(ptr) + " is device memory but the copy kind says host");
  }
  if (found) {
    // Written as a subtraction so that a huge count cannot wrap around.
    const size_t room = info->base + info->size - reinterpret_cast<uintptr_t>(ptr);
    if (count > room) {
      return fail(srErrorInvalidValue, std::string(what) + " range of " + std::to_string(count) + " bytes at " +
                                           hex(ptr) + " runs past the end of its " + std::to_string(info->size) +
                                           "-byte allocation");
    }
  } else {
    info->type = srMemoryTypeUnregistered;
    info->device = -1;
  }
  return srSuccess;
}

srError_t resolve_kind(const void* dst, const void* src, srMemcpyKind* kind) {
  if (*kind != srMemcpyDefault) {
    if (*kind < srMemcpyHostToHost || *kind > srMemcpyDefault)
      return fail(srErrorInvalidMemcpyDirection, "unknown memcpy kind " + std::to_string(int(*kind)));
    return srSuccess;
  }
  AllocationInfo a, b;
  const bool dst_dev = find_allocation(dst, &a) && a.type == srMemoryTypeDevice;
  const bool src_dev = find_allocation(src, &b) && b.type == srMemoryTypeDevice;
  *kind = dst_dev ? (src_dev ? srMemcpyDeviceToDevice : srMemcpyHostToDevice)
                  : (src_dev ? srMemcpyDeviceToHost : srMemcpyHostToHost);
  return srSuccess;
}

struct CopyPlan {
  Device* dev = nullptr;        // the device whose threads perform the copy
  Device* other_dev = nullptr;  // the source's device when it differs (cross-device)
  bool pageable = false;        // a host side is ordinary memory: copy must finish before returning
  srMemcpyKind kind = srMemcpyDefault;  // resolved from the pointers when given as srMemcpyDefault
};

srError_t plan_copy(void* dst, const void* src, size_t count, srMemcpyKind kind, CopyPlan* plan) {
  if (srError_t e = resolve_kind(dst, src, &kind)) return e;
  plan->kind = kind;
  const bool dst_dev = kind == srMemcpyHostToDevice || kind == srMemcpyDeviceToDevice;
  const bool src_dev = kind == srMemcpyDeviceToHost || kind == srMemcpyDeviceToDevice;
  // Direction mismatches are reported before range problems, whichever side has them.
  AllocationInfo di, si;
  const bool dst_is_dev = find_allocation(dst, &di) && di.type == srMemoryTypeDevice;
  const bool src_is_dev = find_allocation(src, &si) && si.type == srMemoryTypeDevice;
  if (dst_is_dev != dst_dev && (dst_is_dev || di.type == srMemoryTypeHost)) {
    return fail(srErrorInvalidMemcpyDirection, std::string("destination ") + hex(dst) + " is " +
                                                   (dst_is_dev ? "device" : "host") + " memory but the copy kind says " +
                                                   (dst_dev ? "device" : "host"));
  }
  if (src_is_dev != src_dev && (src_is_dev || si.type == srMemoryTypeHost)) {
    return fail(srErrorInvalidMemcpyDirection, std::string("source ") + hex(src) + " is " +
                                                   (src_is_dev ? "device" : "host") + " memory but the copy kind says " +
                                                   (src_dev ? "device" : "host"));
  }
  if (srError_t e = check_range(dst, count, dst_dev, "destination", &di)) return e;
  if (srError_t e = check_range(src, count, src_dev, "source", &si)) return e;
  plan->pageable = (!dst_dev && di.type == srMemoryTypeUnregistered) || (!src_dev && si.type == srMemoryTypeUnregistered);
  const int device = dst_dev ? di.device : (src_dev ? si.device : -1);
  if (dst_dev && src_dev && si.device != di.device) {
    if (srError_t e = get_device(si.device, &plan->other_dev)) return e;
  }
  if (device >= 0) return get_device(device, &plan->dev);
  return current_device(&plan->dev);
}

}  // namespace

bool find_allocation(const void* ptr, AllocationInfo* out) {
  const auto p = reinterpret_cast<uintptr_t>(ptr);
  std::shared_lock<std::shared_mutex> lock(g_registry_mutex);
  auto& reg = registry();
  auto it = reg.upper_bound(p);
  if (it == reg.begin()) return false;
  --it;
  const AllocationInfo& a = it->second;
  if (p >= a.base + a.size && !(a.size == 0 && p == a.base)) return false;
  *out = a;
  return true;
}

void execute_copy(Device* dev, void* dst, const void* src, size_t count) {
  execute_chunked(dev, CopyArgs{static_cast<char*>(memcheck_access(dst)), static_cast<const char*>(memcheck_access(src)),
                                count, 0, false});
}

void execute_set(Device* dev, void* dst, int value, size_t count) {
  execute_chunked(dev, CopyArgs{static_cast<char*>(memcheck_access(dst)), nullptr, count, value, true});
}

}  // namespace sunrise_rt

using namespace sunrise_rt;

extern "C" {

srError_t srMalloc(void** ptr, size_t size) {
  if (ptr == nullptr) return fail(srErrorInvalidValue, "srMalloc: ptr is NULL");
  *ptr = nullptr;
  Device* dev = nullptr;
  if (srError_t e = current_device(&dev)) return e;
  if (size == 0) return ok();
  if (size > dev->capacity) {
    return fail(srErrorMemoryAllocation, "device " + std::to_string(dev->index) + " cannot allocate " +
                                             bytes_text(size) + ": its capacity is " + bytes_text(dev->capacity) +
                                             " (set by SUNRISE_DEVICE_MEMORY)");
  }
  const size_t bytes = round_to_pages(size);
  // Reserve capacity first so that concurrent allocations cannot overshoot.
  size_t used = dev->used.load(std::memory_order_relaxed);
  do {
    if (bytes > dev->capacity || used > dev->capacity - bytes) {
      return fail(srErrorMemoryAllocation,
                  "device " + std::to_string(dev->index) + " cannot allocate " + bytes_text(size) + ": " +
                      bytes_text(used) + " of its " + bytes_text(dev->capacity) +
                      " are in use (capacity is set by SUNRISE_DEVICE_MEMORY)");
    }
  } while (!dev->used.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  size_t mapped = bytes;
  void* p = memcheck_enabled() ? memcheck_map(dev->index, size, &mapped) : map_pages(bytes);
  if (p == nullptr) {
    dev->used.fetch_sub(bytes, std::memory_order_relaxed);
    return fail(srErrorMemoryAllocation, "the host could not map " + bytes_text(bytes) + " for device " +
                                             std::to_string(dev->index) + " memory" +
                                             (memcheck_enabled() ? " (SUNRISE_MEMCHECK address space exhausted?)" : ""));
  }
  {
    std::unique_lock<std::shared_mutex> lock(g_registry_mutex);
    registry()[reinterpret_cast<uintptr_t>(p)] =
        AllocationInfo{reinterpret_cast<uintptr_t>(p), size, mapped, srMemoryTypeDevice, dev->index};
  }
  *ptr = p;
  return ok();
}

srError_t srFree(void* ptr) {
  if (ptr == nullptr) return ok();
  AllocationInfo info;
  if (!find_allocation(ptr, &info) || info.type != srMemoryTypeDevice ||
      info.base != reinterpret_cast<uintptr_t>(ptr)) {
    return fail(srErrorInvalidDevicePointer,
                "srFree: " + hex(ptr) + " is not the start of a live device allocation (double free?)");
  }
  if (srError_t e = check_unsafe_call("srFree")) return e;
  Device* dev = nullptr;
  if (srError_t e = get_device(info.device, &dev)) return e;
  // As cudaFree: the memory may still be read by queued work.
  synchronize_device(*dev);
  {
    std::unique_lock<std::shared_mutex> lock(g_registry_mutex);
    auto it = registry().find(info.base);
    if (it == registry().end() || it->second.type != srMemoryTypeDevice)
      return fail(srErrorInvalidDevicePointer, "srFree: " + hex(ptr) + " was freed concurrently");
    registry().erase(it);
  }
  if (memcheck_enabled()) memcheck_unmap(ptr);
  else munmap(ptr, info.mapped);
  dev->used.fetch_sub(info.mapped, std::memory_order_relaxed);
  return ok();
}

srError_t srMallocHost(void** ptr, size_t size) {
  if (ptr == nullptr) return fail(srErrorInvalidValue, "srMallocHost: ptr is NULL");
  *ptr = nullptr;
  if (size == 0) return ok();
  if (srError_t e = check_unsafe_call("srMallocHost")) return e;
  if (size > (size_t{1} << 48)) return fail(srErrorHostMemoryAllocation, "cannot pin " + bytes_text(size));
  const size_t bytes = round_to_pages(size);
  void* p = map_pages(bytes);
  if (p == nullptr) return fail(srErrorHostMemoryAllocation, "could not map " + bytes_text(bytes) + " of pinned memory");
  {
    std::unique_lock<std::shared_mutex> lock(g_registry_mutex);
    registry()[reinterpret_cast<uintptr_t>(p)] =
        AllocationInfo{reinterpret_cast<uintptr_t>(p), size, bytes, srMemoryTypeHost, -1};
  }
  *ptr = p;
  return ok();
}

srError_t srFreeHost(void* ptr) {
  if (ptr == nullptr) return ok();
  AllocationInfo info;
  if (!find_allocation(ptr, &info) || info.type != srMemoryTypeHost || info.base != reinterpret_cast<uintptr_t>(ptr))
    return fail(srErrorInvalidValue, "srFreeHost: " + hex(ptr) + " is not the start of a live pinned allocation");
  if (srError_t e = check_unsafe_call("srFreeHost")) return e;
  // Queued copies may still read it: wait for every device, as cudaFreeHost.
  for (int i = 0; i < device_count_unchecked(); ++i) {
    Device* dev = nullptr;
    if (get_device(i, &dev) == srSuccess) synchronize_device(*dev);
  }
  {
    std::unique_lock<std::shared_mutex> lock(g_registry_mutex);
    registry().erase(info.base);
  }
  munmap(ptr, info.mapped);
  return ok();
}

srError_t srPointerGetAttributes(srPointerAttributes* attributes, const void* ptr) {
  if (attributes == nullptr) return fail(srErrorInvalidValue, "srPointerGetAttributes: attributes is NULL");
  AllocationInfo info;
  if (find_allocation(ptr, &info)) {
    *attributes = {info.type, info.device, reinterpret_cast<void*>(info.base), info.size};
  } else {
    *attributes = {srMemoryTypeUnregistered, -1, nullptr, 0};
  }
  return ok();
}

srError_t srMemcpyAsync(void* dst, const void* src, size_t count, srMemcpyKind kind, srStream_t stream) {
  if (srError_t e = check_stream(stream)) return e;
  CopyPlan plan;
  if (srError_t e = plan_copy(dst, src, count, kind, &plan)) return e;
  if (count == 0) return ok();
  // Waiting for the copy below is what a capture cannot do.
  if (plan.pageable) {
    if (srError_t e = check_unsafe_call("srMemcpyAsync from or to pageable host memory")) return e;
    if (srError_t e = check_not_capturing(stream, "srMemcpyAsync from or to pageable host memory")) return e;
  }
  if (srError_t e = stream->device->report_sticky()) return e;
  Task t;
  t.kind = Task::Kind::Copy;
  t.dst = dst;
  t.src = src;
  t.count = count;
  t.value = plan.kind;  // for activity records
  uint64_t seq = 0;
  if (srError_t e = submit(stream, std::move(t), &seq)) return e;
  // Pageable host memory may be reused as soon as we return: finish first.
  if (plan.pageable) {
    wait_for(stream, seq);
    if (srError_t e = stream->device->report_sticky()) return e;
  }
  return ok();
}

srError_t srMemcpy(void* dst, const void* src, size_t count, srMemcpyKind kind) {
  CopyPlan plan;
  if (srError_t e = plan_copy(dst, src, count, kind, &plan)) return e;
  if (srError_t e = check_unsafe_call("srMemcpy")) return e;
  if (srError_t e = synchronize_device(*plan.dev)) return e;
  if (plan.other_dev != nullptr) {
    if (srError_t e = synchronize_device(*plan.other_dev)) return e;
  }
  if (count > 0) execute_copy(plan.dev, dst, src, count);
  return ok();
}

srError_t srMemsetAsync(void* dst, int value, size_t count, srStream_t stream) {
  if (srError_t e = check_stream(stream)) return e;
  AllocationInfo info;
  if (srError_t e = check_range(dst, count, true, "memset destination", &info)) return e;
  if (count == 0) return ok();
  if (srError_t e = stream->device->report_sticky()) return e;
  Task t;
  t.kind = Task::Kind::Set;
  t.dst = dst;
  t.value = value;
  t.count = count;
  if (srError_t e = submit(stream, std::move(t))) return e;
  return ok();
}

srError_t srMemset(void* dst, int value, size_t count) {
  AllocationInfo info;
  if (srError_t e = check_range(dst, count, true, "memset destination", &info)) return e;
  Device* dev = nullptr;
  if (srError_t e = get_device(info.device, &dev)) return e;
  if (srError_t e = check_unsafe_call("srMemset")) return e;
  if (srError_t e = synchronize_device(*dev)) return e;
  if (count > 0) execute_set(dev, dst, value, count);
  return ok();
}

}  // extern "C"
