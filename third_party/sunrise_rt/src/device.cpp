#include "compute_pool.h"
#include "internal.h"

#include <cstdio>
#include <cstring>

namespace sunrise_rt {
namespace {

thread_local int t_current_device = 0;

struct Devices {
  std::vector<std::unique_ptr<Device>> list;
};

Devices* build_devices() {
  // Deliberately never destroyed: device threads may still be running while
  // static destructors run at process exit, and must find their device alive.
  static Devices& devices = *std::make_unique<Devices>().release();
  const Config& cfg = config();
  for (int i = 0; i < cfg.device_count; ++i) {
    auto dev = std::make_unique<Device>();
    dev->index = i;
    dev->capacity = cfg.memory_bytes;
    srDeviceProp& p = dev->prop;
    std::snprintf(p.name, sizeof(p.name), "Sunrise SR1 (emulated, %d CUs)", cfg.compute_units);
    p.totalGlobalMem = cfg.memory_bytes;
    p.multiProcessorCount = cfg.compute_units;
    // 8.0: the capability level at which CUDA-minded code enables bf16 paths.
    p.major = 8;
    p.minor = 0;
    p.maxThreadsPerBlock = 1024;
    p.warpSize = 32;
    p.maxGridSize[0] = 0x7fffffff;
    p.maxGridSize[1] = 65535;
    p.maxGridSize[2] = 65535;
    p.sharedMemPerBlock = 48 * 1024;
    p.memcheck = cfg.memcheck ? 1 : 0;
    p.serialWorkUs = cfg.serial_us;
    devices.list.push_back(std::move(dev));
  }
  for (auto& dev : devices.list) {
    srStream* s = nullptr;
    create_stream(dev.get(), 0, srStreamDefault, /*is_default=*/true, &s);
    dev->default_stream = s;
  }
  return &devices;
}

Devices* devices() {
  static Devices* d = build_devices();
  return d;
}

}  // namespace

ComputePool& Device::compute_pool() {
  std::call_once(pool_once, [this] { pool = std::make_unique<ComputePool>(index, prop.multiProcessorCount); });
  return *pool;
}

void Device::set_sticky(srError_t err, const std::string& detail) {
  std::lock_guard<std::mutex> lock(error_mutex);
  // The first failure is the informative one; later ones are usually fallout.
  if (sticky() != srSuccess) return;
  sticky_detail = "device " + std::to_string(index) + ": " + detail;
  sticky_error.store(err, std::memory_order_release);
}

srError_t Device::report_sticky() {
  if (sticky_error.load(std::memory_order_acquire) == srSuccess) return srSuccess;
  std::lock_guard<std::mutex> lock(error_mutex);
  return fail(sticky(), sticky_detail);
}

int device_count_unchecked() { return config().device_count; }

srError_t get_device(int index, Device** out) {
  const Config& cfg = config();
  if (!cfg.error.empty()) return fail(srErrorInitializationError, cfg.error);
  if (index < 0 || index >= cfg.device_count) {
    return fail(srErrorInvalidDevice, "device " + std::to_string(index) + " does not exist; there are " +
                                          std::to_string(cfg.device_count) +
                                          " devices (set SUNRISE_DEVICE_COUNT to change that)");
  }
  *out = devices()->list[static_cast<size_t>(index)].get();
  return srSuccess;
}

srError_t current_device(Device** out) { return get_device(t_current_device, out); }

srError_t synchronize_device(Device& dev) {
  std::vector<srStream*> streams;
  {
    std::lock_guard<std::mutex> lock(dev.streams_mutex);
    streams = dev.live_streams;
  }
  for (srStream* s : streams) wait_for(s, s->submitted.load(std::memory_order_acquire));
  return dev.report_sticky();
}

}  // namespace sunrise_rt

using namespace sunrise_rt;

extern "C" {

srError_t srGetDeviceCount(int* count) {
  if (count == nullptr) return fail(srErrorInvalidValue, "srGetDeviceCount: count is NULL");
  const Config& cfg = config();
  if (!cfg.error.empty()) return fail(srErrorInitializationError, cfg.error);
  *count = cfg.device_count;
  return ok();
}

srError_t srGetDevice(int* device) {
  if (device == nullptr) return fail(srErrorInvalidValue, "srGetDevice: device is NULL");
  *device = t_current_device;
  return ok();
}

srError_t srSetDevice(int device) {
  Device* dev = nullptr;
  if (srError_t e = get_device(device, &dev)) return e;
  t_current_device = device;
  return ok();
}

srError_t srGetDeviceProperties(srDeviceProp* prop, int device) {
  if (prop == nullptr) return fail(srErrorInvalidValue, "srGetDeviceProperties: prop is NULL");
  Device* dev = nullptr;
  if (srError_t e = get_device(device, &dev)) return e;
  *prop = dev->prop;
  return ok();
}

srError_t srDeviceSynchronize(void) {
  Device* dev = nullptr;
  if (srError_t e = current_device(&dev)) return e;
  if (srError_t e = check_unsafe_call("srDeviceSynchronize")) return e;
  if (srError_t e = synchronize_device(*dev)) return e;
  return ok();
}

srError_t srMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr)
    return fail(srErrorInvalidValue, "srMemGetInfo: output pointer is NULL");
  Device* dev = nullptr;
  if (srError_t e = current_device(&dev)) return e;
  const size_t used = dev->used.load(std::memory_order_relaxed);
  *total_bytes = dev->capacity;
  *free_bytes = used >= dev->capacity ? 0 : dev->capacity - used;
  return ok();
}

}  // extern "C"
