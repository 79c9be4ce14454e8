// Kernel launches: grid coverage, configuration checks, argument copying,
// sticky asynchronous errors, SUNRISE_LAUNCH_BLOCKING, and whole-suite
// re-runs under other runtime configurations.
#include "harness.h"

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <vector>

using namespace srtest;

namespace {

struct GridArgs {
  std::atomic<int>* hits;
  std::atomic<int>* bad;
  srDim3 grid;
  srDim3 block;
  int units;
  int device;
};

bool same(const srDim3& a, const srDim3& b) { return a.x == b.x && a.y == b.y && a.z == b.z; }

void grid_kernel(const srKernelContext* ctx, void* raw) {
  const auto* a = static_cast<const GridArgs*>(raw);
  bool ok = same(ctx->gridDim, a->grid) && same(ctx->blockDim, a->block) && ctx->blockIdx.x < a->grid.x &&
            ctx->blockIdx.y < a->grid.y && ctx->blockIdx.z < a->grid.z && ctx->computeUnit >= 0 &&
            ctx->computeUnit < a->units && ctx->device == a->device;
  if (!ok) {
    a->bad->fetch_add(1);
    return;
  }
  const size_t linear = ctx->blockIdx.x + size_t{ctx->blockIdx.y} * a->grid.x +
                        size_t{ctx->blockIdx.z} * a->grid.x * a->grid.y;
  a->hits[linear].fetch_add(1);
}

// Launches grid_kernel on `device` and checks every block ran exactly once
// with a consistent context.
void check_grid(int device, srDim3 grid, srDim3 block) {
  srDeviceProp prop;
  REQUIRE_SR(srGetDeviceProperties(&prop, device));
  srStream_t s = nullptr;
  REQUIRE_SR(srDeviceGetDefaultStream(device, &s));
  const size_t total = size_t{grid.x} * grid.y * grid.z;
  std::unique_ptr<std::atomic<int>[]> hits(new std::atomic<int>[total]);
  for (size_t i = 0; i < total; ++i) hits[i] = 0;
  std::atomic<int> bad{0};
  GridArgs a{hits.get(), &bad, grid, block, prop.multiProcessorCount, device};
  REQUIRE_SR(srLaunchKernel(grid_kernel, grid, block, &a, sizeof(a), s));
  REQUIRE_SR(srStreamSynchronize(s));
  size_t wrong = 0;
  for (size_t i = 0; i < total; ++i) wrong += hits[i].load() != 1;
  const std::string where = "grid " + std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" +
                            std::to_string(grid.z) + " on device " + std::to_string(device);
  CHECK_MSG(wrong == 0, where + ": " + std::to_string(wrong) + " blocks did not run exactly once");
  CHECK_MSG(bad.load() == 0, where + ": " + std::to_string(bad.load()) + " blocks saw a bad context");
}

void nop_kernel(const srKernelContext*, void*) {}

}  // namespace

TEST(launch_grid_coverage) {
  check_grid(0, srDim3{1000, 1, 1}, srDim3{256, 1, 1});
  check_grid(0, srDim3{37, 11, 1}, srDim3{16, 16, 1});
  check_grid(0, srDim3{7, 5, 3}, srDim3{8, 8, 4});
  check_grid(0, srDim3{1, 1, 200}, srDim3{1, 1, 1});
  check_grid(0, srDim3{1, 300, 2}, srDim3{32, 1, 1});
  check_grid(0, srDim3{1, 1, 1}, srDim3{1, 1, 1});
  check_grid(0, srDim3{20000, 1, 1}, srDim3{128, 1, 1});
  if (device_count() >= 2) {
    check_grid(1, srDim3{1000, 1, 1}, srDim3{64, 1, 1});
    check_grid(1, srDim3{9, 9, 9}, srDim3{4, 4, 4});
  }
}

TEST(launch_invalid_configuration) {
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  const srDim3 one{1, 1, 1};
  CHECK_ERR(srLaunchKernel(nop_kernel, srDim3{0, 1, 1}, one, nullptr, 0, s), srErrorInvalidConfiguration);
  CHECK(std::strlen(srGetLastErrorDetail()) > 0);
  CHECK_ERR(srLaunchKernel(nop_kernel, srDim3{4, 0, 1}, one, nullptr, 0, s), srErrorInvalidConfiguration);
  CHECK_ERR(srLaunchKernel(nop_kernel, srDim3{4, 1, 0}, one, nullptr, 0, s), srErrorInvalidConfiguration);
  CHECK_ERR(srLaunchKernel(nop_kernel, one, srDim3{0, 1, 1}, nullptr, 0, s), srErrorInvalidConfiguration);
  CHECK_ERR(srLaunchKernel(nop_kernel, one, srDim3{1, 0, 1}, nullptr, 0, s), srErrorInvalidConfiguration);
  CHECK_ERR(srLaunchKernel(nop_kernel, one, srDim3{1, 1, 0}, nullptr, 0, s), srErrorInvalidConfiguration);
  CHECK_ERR(srLaunchKernel(nullptr, one, one, nullptr, 0, s), srErrorInvalidValue);
  CHECK_ERR(srLaunchKernel(nop_kernel, one, one, nullptr, 16, s), srErrorInvalidValue);
  std::vector<unsigned char> big(SR_MAX_KERNEL_ARGS_BYTES + 1, 0);
  CHECK_ERR(srLaunchKernel(nop_kernel, one, one, big.data(), big.size(), s), srErrorInvalidConfiguration);
  CHECK(std::strlen(srGetLastErrorDetail()) > 0);
  CHECK_ERR(srLaunchKernel(nop_kernel, one, one, big.data(), size_t{1} << 40, s), srErrorInvalidConfiguration);
  // Exactly the limit is fine.
  CHECK_SR(srLaunchKernel(nop_kernel, one, one, big.data(), SR_MAX_KERNEL_ARGS_BYTES, s));
  // Rejected launches were not queued and left no sticky error.
  CHECK_SR(srStreamSynchronize(s));
  CHECK_SR(srPeekAtLastError());
  CHECK_SR(srStreamDestroy(s));
}

// Launches past the limits the device advertises in srDeviceProp are
// configuration errors, as on CUDA.
TEST(launch_rejects_dims_beyond_device_limits) {
  srDeviceProp prop;
  REQUIRE_SR(srGetDeviceProperties(&prop, 0));
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  const srDim3 one{1, 1, 1};
  const unsigned too_many_threads = static_cast<unsigned>(prop.maxThreadsPerBlock) + 1;
  CHECK_ERR(srLaunchKernel(nop_kernel, one, srDim3{too_many_threads, 1, 1}, nullptr, 0, s),
            srErrorInvalidConfiguration);
  CHECK_ERR(srLaunchKernel(nop_kernel, one, srDim3{64, 64, 1}, nullptr, 0, s), srErrorInvalidConfiguration);
  CHECK_ERR(srLaunchKernel(nop_kernel, srDim3{1, static_cast<unsigned>(prop.maxGridSize[1]) + 1, 1}, one, nullptr, 0, s),
            srErrorInvalidConfiguration);
  CHECK_ERR(srLaunchKernel(nop_kernel, srDim3{1, 1, static_cast<unsigned>(prop.maxGridSize[2]) + 1}, one, nullptr, 0, s),
            srErrorInvalidConfiguration);
  CHECK_SR(srStreamSynchronize(s));
  CHECK_SR(srStreamDestroy(s));
}

namespace {

// Argument block: header + payload, copied verbatim by every block into out.
struct ArgHeader {
  unsigned char* out;
  size_t size;
  std::atomic<int>* misaligned;
};

void copy_args_kernel(const srKernelContext* ctx, void* raw) {
  ArgHeader h;
  std::memcpy(&h, raw, sizeof(h));
  if (reinterpret_cast<uintptr_t>(raw) % alignof(void*) != 0) h.misaligned->fetch_add(1);
  std::memcpy(h.out + size_t{ctx->blockIdx.x} * h.size, raw, h.size);
}

}  // namespace

TEST(launch_args_are_copied) {
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  constexpr unsigned kBlocks = 4;
  const size_t sizes[] = {sizeof(ArgHeader), 64, 128, 129, 1000, SR_MAX_KERNEL_ARGS_BYTES};
  std::atomic<int> misaligned{0};
  for (size_t size : sizes) {
    std::vector<unsigned char> out(size * kBlocks, 0);
    std::vector<unsigned char> expected(size);
    {
      Gate gate;
      GateOpener opener(gate);
      CHECK_SR(srLaunchHostFunc(s, gate_host_fn, &gate));  // the launch below stays queued
      auto args = std::make_unique<unsigned char[]>(size);
      for (size_t i = 0; i < size; ++i) args[i] = static_cast<unsigned char>(i * 7 + size);
      ArgHeader h{out.data(), size, &misaligned};
      std::memcpy(args.get(), &h, sizeof(h));
      std::memcpy(expected.data(), args.get(), size);
      CHECK_SR(srLaunchKernel(copy_args_kernel, srDim3{kBlocks, 1, 1}, srDim3{1, 1, 1}, args.get(), size, s));
      // Clobber, then free the caller's copy before the kernel runs.
      std::memset(args.get() + sizeof(ArgHeader), 0xEE, size - sizeof(ArgHeader));
      args.reset();
    }  // opens the gate
    CHECK_SR(srStreamSynchronize(s));
    for (unsigned b = 0; b < kBlocks; ++b) {
      CHECK_MSG(std::memcmp(out.data() + b * size, expected.data(), size) == 0,
                "block " + std::to_string(b) + " saw different args for size " + std::to_string(size));
    }
  }
  CHECK_EQ(misaligned.load(), 0);
  CHECK_SR(srStreamDestroy(s));
}

// ------------------------------------------------------------ sticky errors

namespace {

void report_in_block3(const srKernelContext* ctx, void*) {
  if (ctx->blockIdx.x == 3) srReportAsyncError(srErrorLaunchFailure, "boom 42 from block 3");
}

void throw_in_block5(const srKernelContext* ctx, void*) {
  if (ctx->blockIdx.x == 5) throw std::runtime_error("kaboom-7");
}

void set_flag(const srKernelContext*, void* raw) {
  std::atomic<int>* f = nullptr;
  std::memcpy(&f, raw, sizeof(f));
  f->store(1);
}

// After an asynchronous failure on device `dev` with message `msg`: every
// synchronizing call reports it until srGetLastError clears it, then the
// device works again.
void check_sticky_then_recover(int dev, srStream_t s, const char* msg) {
  CHECK_SR(srSetDevice(dev));
  CHECK_ERR(srStreamSynchronize(s), srErrorLaunchFailure);
  CHECK_MSG(contains(srGetLastErrorDetail(), msg), std::string("detail: ") + srGetLastErrorDetail());
  CHECK_ERR(srStreamSynchronize(s), srErrorLaunchFailure);  // still there
  CHECK_ERR(srDeviceSynchronize(), srErrorLaunchFailure);
  CHECK_MSG(contains(srGetLastErrorDetail(), msg), std::string("detail: ") + srGetLastErrorDetail());
  CHECK_ERR(srPeekAtLastError(), srErrorLaunchFailure);
  CHECK_ERR(srPeekAtLastError(), srErrorLaunchFailure);  // peek does not clear
  // Sticky for the whole device: other streams of it report it too.
  srStream_t other = nullptr;
  CHECK_SR(srDeviceGetDefaultStream(dev, &other));
  CHECK_ERR(srStreamSynchronize(other), srErrorLaunchFailure);
  CHECK_ERR(srStreamQuery(s), srErrorLaunchFailure);
  // srGetLastError returns it with its message, then clears it.
  CHECK_ERR(srGetLastError(), srErrorLaunchFailure);
  CHECK_MSG(contains(srGetLastErrorDetail(), msg), std::string("detail: ") + srGetLastErrorDetail());
  CHECK_SR(srGetLastError());
  CHECK_SR(srPeekAtLastError());
  CHECK_SR(srStreamSynchronize(s));
  CHECK_SR(srDeviceSynchronize());
  CHECK_SR(srStreamQuery(s));
  // The device works afterwards.
  std::atomic<int> flag{0};
  std::atomic<int>* fp = &flag;
  CHECK_SR(srLaunchKernel(set_flag, srDim3{3, 1, 1}, srDim3{1, 1, 1}, &fp, sizeof(fp), s));
  CHECK_SR(srStreamSynchronize(s));
  CHECK_EQ(flag.load(), 1);
  CHECK_SR(srSetDevice(0));
}

}  // namespace

TEST(sticky_error_from_report_async_error) {
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  CHECK_SR(srLaunchKernel(report_in_block3, srDim3{8, 1, 1}, srDim3{1, 1, 1}, nullptr, 0, s));
  check_sticky_then_recover(0, s, "boom 42");
  // From a host function.
  auto host_report = +[](void*) { srReportAsyncError(srErrorLaunchFailure, "host fn says no"); };
  CHECK_SR(srLaunchHostFunc(s, host_report, nullptr));
  check_sticky_then_recover(0, s, "host fn says no");
  CHECK_SR(srStreamDestroy(s));
}

TEST(sticky_error_from_kernel_exception) {
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  CHECK_SR(srLaunchKernel(throw_in_block5, srDim3{16, 1, 1}, srDim3{1, 1, 1}, nullptr, 0, s));
  check_sticky_then_recover(0, s, "kaboom-7");
  // Single-block kernels run on the stream thread itself.
  auto throw_one = +[](const srKernelContext*, void*) { throw std::logic_error("single-block-throw"); };
  CHECK_SR(srLaunchKernel(throw_one, srDim3{1, 1, 1}, srDim3{1, 1, 1}, nullptr, 0, s));
  check_sticky_then_recover(0, s, "single-block-throw");
  auto throw_int = +[](const srKernelContext*, void*) { throw 42; };
  CHECK_SR(srLaunchKernel(throw_int, srDim3{2, 1, 1}, srDim3{1, 1, 1}, nullptr, 0, s));
  check_sticky_then_recover(0, s, "");
  auto host_throw = +[](void*) { throw std::runtime_error("host-fn-threw-9"); };
  CHECK_SR(srLaunchHostFunc(s, host_throw, nullptr));
  check_sticky_then_recover(0, s, "host-fn-threw-9");
  CHECK_SR(srStreamDestroy(s));
}

TEST(sticky_error_visible_to_event_sync) {
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  srEvent_t e = nullptr;
  REQUIRE_SR(srEventCreate(&e));
  CHECK_SR(srLaunchKernel(report_in_block3, srDim3{4, 1, 1}, srDim3{1, 1, 1}, nullptr, 0, s));
  CHECK_SR(srEventRecord(e, s));
  CHECK_ERR(srEventSynchronize(e), srErrorLaunchFailure);
  CHECK_ERR(srEventQuery(e), srErrorLaunchFailure);
  CHECK_ERR(srGetLastError(), srErrorLaunchFailure);
  CHECK_SR(srEventQuery(e));
  CHECK_SR(srEventDestroy(e));
  CHECK_SR(srStreamDestroy(s));
}

TEST(sticky_error_is_per_device) {
  REQUIRE_DEVICES(2);
  srStream_t s0 = nullptr, s1 = nullptr;
  REQUIRE_SR(srDeviceGetDefaultStream(0, &s0));
  REQUIRE_SR(srDeviceGetDefaultStream(1, &s1));
  CHECK_SR(srLaunchKernel(report_in_block3, srDim3{4, 1, 1}, srDim3{1, 1, 1}, nullptr, 0, s0));
  CHECK_ERR(srStreamSynchronize(s0), srErrorLaunchFailure);
  // Device 1 is unaffected.
  CHECK_SR(srSetDevice(1));
  CHECK_SR(srPeekAtLastError());
  CHECK_SR(srDeviceSynchronize());
  CHECK_SR(srStreamSynchronize(s1));
  std::atomic<int> flag{0};
  std::atomic<int>* fp = &flag;
  CHECK_SR(srLaunchKernel(set_flag, srDim3{2, 1, 1}, srDim3{1, 1, 1}, &fp, sizeof(fp), s1));
  CHECK_SR(srStreamSynchronize(s1));
  CHECK_EQ(flag.load(), 1);
  void* d = nullptr;
  CHECK_SR(srMalloc(&d, 4096));
  CHECK_SR(srMemset(d, 0, 4096));
  CHECK_SR(srFree(d));
  CHECK_SR(srGetLastError());  // clears nothing on device 0
  // Device 0 still has it, until cleared from device 0.
  CHECK_SR(srSetDevice(0));
  CHECK_ERR(srPeekAtLastError(), srErrorLaunchFailure);
  CHECK_ERR(srGetLastError(), srErrorLaunchFailure);
  CHECK_SR(srDeviceSynchronize());
  // And an error on device 1 leaves device 0 alone.
  CHECK_SR(srLaunchKernel(report_in_block3, srDim3{4, 1, 1}, srDim3{1, 1, 1}, nullptr, 0, s1));
  CHECK_SR(srSetDevice(1));
  CHECK_ERR(srDeviceSynchronize(), srErrorLaunchFailure);
  CHECK_SR(srSetDevice(0));
  CHECK_SR(srDeviceSynchronize());
  CHECK_SR(srStreamSynchronize(s0));
  CHECK_SR(srSetDevice(1));
  CHECK_ERR(srGetLastError(), srErrorLaunchFailure);
  CHECK_SR(srSetDevice(0));
}

// ---------------------------------------------------- SUNRISE_LAUNCH_BLOCKING

// Child body: SUNRISE_LAUNCH_BLOCKING=1 — every submission has run when it returns.
HIDDEN_TEST(child_launch_blocking) {
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  struct Args {
    std::atomic<int>* flag;
  };
  std::atomic<int> flag{0};
  auto slow_kernel = +[](const srKernelContext*, void* raw) {
    spin_for_ms(20);
    static_cast<Args*>(raw)->flag->store(1);
  };
  Args a{&flag};
  CHECK_SR(srLaunchKernel(slow_kernel, srDim3{1, 1, 1}, srDim3{1, 1, 1}, &a, sizeof(a), s));
  CHECK_EQ(flag.load(), 1);
  CHECK_SR(srStreamQuery(s));
  std::atomic<int> hflag{0};
  auto slow_host = +[](void* raw) {
    spin_for_ms(20);
    static_cast<std::atomic<int>*>(raw)->store(1);
  };
  CHECK_SR(srLaunchHostFunc(s, slow_host, &hflag));
  CHECK_EQ(hflag.load(), 1);
  // Pinned copies too.
  void* d = nullptr;
  unsigned char* pinned = nullptr;
  REQUIRE_SR(srMalloc(&d, 1 << 20));
  REQUIRE_SR(srMallocHost(reinterpret_cast<void**>(&pinned), 1 << 20));
  CHECK_SR(srMemsetAsync(d, 0x42, 1 << 20, s));
  CHECK_SR(srMemcpyAsync(pinned, d, 1 << 20, srMemcpyDeviceToHost, s));
  CHECK_EQ(int(pinned[0]), 0x42);
  CHECK_EQ(int(pinned[(1 << 20) - 1]), 0x42);
  srEvent_t e = nullptr;
  REQUIRE_SR(srEventCreate(&e));
  CHECK_SR(srEventRecord(e, s));
  CHECK_SR(srEventQuery(e));
  // A failing launch is reported no later than the next synchronize.
  const srError_t launch = srLaunchKernel(report_in_block3, srDim3{4, 1, 1}, srDim3{1, 1, 1}, nullptr, 0, s);
  CHECK(launch == srSuccess || launch == srErrorLaunchFailure);
  CHECK_ERR(srStreamSynchronize(s), srErrorLaunchFailure);
  CHECK_ERR(srGetLastError(), srErrorLaunchFailure);
  CHECK_SR(srStreamSynchronize(s));
  CHECK_SR(srEventDestroy(e));
  CHECK_SR(srFreeHost(pinned));
  CHECK_SR(srFree(d));
  CHECK_SR(srStreamDestroy(s));
}

TEST(launch_blocking_env) {
  CHECK_EQ(run_child("child_launch_blocking", {{"SUNRISE_LAUNCH_BLOCKING", "1"}}), 0);
}

// ------------------------------------------------- other runtime configurations

namespace {

void run_variant(const std::vector<const char*>& tests, const std::vector<std::pair<const char*, const char*>>& env) {
  for (const char* t : tests) CHECK_MSG(run_child(t, env) == 0, std::string(t) + " failed in this configuration");
}

}  // namespace

// Idle device threads and waiting hosts sleep at once: exercises every
// sleep/wake-up path instead of the spinning fast paths.
TEST(variant_spin_zero) {
  run_variant({"stream_ordering", "stream_is_asynchronous", "streams_run_concurrently", "event_query_and_synchronize",
               "stream_wait_event_across_devices", "stress_threads_share_one_stream"},
              {{"SUNRISE_SPIN_US", "0"}});
}

// No launch bound to speak of: the queue holds thousands of tasks at once.
TEST(variant_deep_launch_queue) {
  run_variant({"stream_queue_spans_and_reuses_segments", "stream_queue_grows_while_blocked",
               "stress_threads_share_one_stream"},
              {{"SUNRISE_MAX_QUEUED", "100000"}});
}

// A single compute unit per device: every launch runs on its stream thread.
TEST(variant_one_compute_unit) {
  run_variant({"launch_grid_coverage", "streams_run_concurrently", "memset_and_memset_async",
               "sticky_error_from_kernel_exception"},
              {{"SUNRISE_COMPUTE_UNITS", "1"}});
}

// More compute units than host cores: oversubscribed helpers.
TEST(variant_many_compute_units) {
  run_variant({"launch_grid_coverage", "streams_run_concurrently", "pinned_memory_async_copy"},
              {{"SUNRISE_COMPUTE_UNITS", "8"}});
}
