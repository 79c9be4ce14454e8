// The profiler's per-op device timing hooks (torch::profiler::impl::ProfilerStubs)
// for sunrise: a timing event recorded on the current stream at each op's
// start and end, as the CUDA stubs do with cudaEvents. torch.profiler uses them
// in its marker-only mode (`use_kineto=False`); device lanes come from the
// Kineto activity profiler (SunriseActivityProfiler.cpp).
#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseStream.h>

#include <c10/util/ApproximateClock.h>
#include <torch/csrc/profiler/stubs/base.h>

#include <memory>

namespace torch_sunrise::profiler {
namespace {

using torch::profiler::impl::ProfilerVoidEventStub;

struct SunriseProfilerStubs final : torch::profiler::impl::ProfilerStubs {
  void record(c10::DeviceIndex* device, ProfilerVoidEventStub* event, int64_t* cpu_ns) const override {
    const c10::DeviceIndex index = current_device();
    if (device != nullptr) *device = index;
    srEvent_t raw = nullptr;
    SUNRISE_CHECK(srEventCreateWithFlags(&raw, srEventDefault));
    *event = std::shared_ptr<void>(raw, [](void* e) { SUNRISE_WARN(srEventDestroy(static_cast<srEvent_t>(e))); });
    if (cpu_ns != nullptr) *cpu_ns = c10::getTime();
    SUNRISE_CHECK(srEventRecord(raw, getCurrentSunriseStream(index).handle()));
  }

  float elapsed(const ProfilerVoidEventStub* start, const ProfilerVoidEventStub* end) const override {
    if (start == nullptr || end == nullptr || !*start || !*end) return 0.0f;
    auto* a = static_cast<srEvent_t>(start->get());
    auto* b = static_cast<srEvent_t>(end->get());
    SUNRISE_CHECK(srEventSynchronize(a));
    SUNRISE_CHECK(srEventSynchronize(b));
    float ms = 0.0f;
    SUNRISE_CHECK(srEventElapsedTime(&ms, a, b));
    return ms * 1000.0f;  // microseconds
  }

  // No annotation ranges on the device (NVTX's place): traces carry op names.
  void mark(const char* /*name*/) const override {}
  void rangePush(const char* /*name*/) const override {}
  void rangePop() const override {}

  bool enabled() const override { return true; }

  void onEachDevice(std::function<void(int)> op) const override {
    for (c10::DeviceIndex d = 0; d < device_count(); ++d) {
      const SunriseGuard guard(d);
      op(d);
    }
  }

  void synchronize() const override {
    for (c10::DeviceIndex d = 0; d < device_count(); ++d) device_synchronize(d);
  }
};

struct RegisterStubs {
  RegisterStubs() {
    static SunriseProfilerStubs stubs;
    torch::profiler::impl::registerPrivateUse1Methods(&stubs);
  }
};
const RegisterStubs g_register_stubs;

}  // namespace
}  // namespace torch_sunrise::profiler
