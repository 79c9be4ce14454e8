// Devices, error reporting and environment configuration.
#include "harness.h"

#include <cstdlib>
#include <thread>

using namespace srtest;

// ------------------------------------------------------------ device count

// Child body: SRTEST_EXPECT_COUNT holds the device count the parent set up.
HIDDEN_TEST(child_expect_device_count) {
  const char* want_text = std::getenv("SRTEST_EXPECT_COUNT");
  REQUIRE(want_text != nullptr);
  const int want = std::atoi(want_text);
  int n = -1;
  REQUIRE_SR(srGetDeviceCount(&n));
  CHECK_EQ(n, want);
  // Every device in range is usable, the next one is not.
  for (int d = 0; d < n; ++d) {
    CHECK_SR(srSetDevice(d));
    srStream_t s = nullptr;
    CHECK_SR(srDeviceGetDefaultStream(d, &s));
    CHECK_SR(srStreamSynchronize(s));
  }
  CHECK_ERR(srSetDevice(n), srErrorInvalidDevice);
}

TEST(device_count_default_is_2) {
  CHECK_EQ(run_child("child_expect_device_count", {{"SUNRISE_DEVICE_COUNT", nullptr}, {"SRTEST_EXPECT_COUNT", "2"}}),
           0);
}

TEST(device_count_env_override) {
  CHECK_EQ(run_child("child_expect_device_count", {{"SUNRISE_DEVICE_COUNT", "5"}, {"SRTEST_EXPECT_COUNT", "5"}}), 0);
  CHECK_EQ(run_child("child_expect_device_count", {{"SUNRISE_DEVICE_COUNT", "1"}, {"SRTEST_EXPECT_COUNT", "1"}}), 0);
}

// Child body: the environment is invalid; every call reports
// srErrorInitializationError naming the variable (SRTEST_BAD_VAR), nothing aborts.
HIDDEN_TEST(child_expect_init_error) {
  const char* var = std::getenv("SRTEST_BAD_VAR");
  REQUIRE(var != nullptr);
  int n = -1;
  CHECK_ERR(srGetDeviceCount(&n), srErrorInitializationError);
  CHECK_MSG(contains(srGetLastErrorDetail(), var), srGetLastErrorDetail());
  CHECK_ERR(srSetDevice(0), srErrorInitializationError);
  void* p = nullptr;
  CHECK_ERR(srMalloc(&p, 4096), srErrorInitializationError);
  srStream_t s = nullptr;
  CHECK_ERR(srStreamCreate(&s), srErrorInitializationError);
}

TEST(invalid_environment_is_initialization_error) {
  CHECK_EQ(run_child("child_expect_init_error", {{"SUNRISE_DEVICE_COUNT", "two"}, {"SRTEST_BAD_VAR", "SUNRISE_DEVICE_COUNT"}}),
           0);
  CHECK_EQ(run_child("child_expect_init_error", {{"SUNRISE_DEVICE_COUNT", "0"}, {"SRTEST_BAD_VAR", "SUNRISE_DEVICE_COUNT"}}),
           0);
  CHECK_EQ(run_child("child_expect_init_error",
                     {{"SUNRISE_DEVICE_MEMORY", "lots"}, {"SRTEST_BAD_VAR", "SUNRISE_DEVICE_MEMORY"}}),
           0);
  CHECK_EQ(run_child("child_expect_init_error", {{"SUNRISE_SPIN_US", "-3"}, {"SRTEST_BAD_VAR", "SUNRISE_SPIN_US"}}), 0);
}

// ------------------------------------------------------------------ devices

TEST(set_device_invalid_index) {
  const int n = device_count();
  REQUIRE(n >= 1);
  CHECK_SR(srSetDevice(0));
  CHECK_ERR(srSetDevice(n), srErrorInvalidDevice);
  CHECK_MSG(contains(srGetLastErrorDetail(), std::to_string(n)),
            std::string("detail should mention the device count: ") + srGetLastErrorDetail());
  CHECK_ERR(srSetDevice(-1), srErrorInvalidDevice);
  CHECK_ERR(srSetDevice(1 << 20), srErrorInvalidDevice);
  // A failed srSetDevice leaves the current device alone.
  int cur = -1;
  CHECK_SR(srGetDevice(&cur));
  CHECK_EQ(cur, 0);
  // Other entry points taking an ordinal reject it the same way.
  srDeviceProp prop;
  CHECK_ERR(srGetDeviceProperties(&prop, n), srErrorInvalidDevice);
  srStream_t s = nullptr;
  CHECK_ERR(srDeviceGetDefaultStream(n, &s), srErrorInvalidDevice);
  CHECK_ERR(srDeviceGetDefaultStream(-1, &s), srErrorInvalidDevice);
  // NULL outputs are invalid values, not crashes.
  CHECK_ERR(srGetDeviceCount(nullptr), srErrorInvalidValue);
  CHECK_ERR(srGetDevice(nullptr), srErrorInvalidValue);
  CHECK_ERR(srGetDeviceProperties(nullptr, 0), srErrorInvalidValue);
  CHECK_ERR(srDeviceGetDefaultStream(0, nullptr), srErrorInvalidValue);
}

TEST(current_device_is_per_thread) {
  REQUIRE_DEVICES(2);
  int cur = -1;
  CHECK_SR(srGetDevice(&cur));
  CHECK_EQ(cur, 0);
  CHECK_SR(srSetDevice(1));
  CHECK_SR(srGetDevice(&cur));
  CHECK_EQ(cur, 1);
  std::atomic<int> seen_in_thread{-1}, after_set{-1};
  std::thread t([&] {
    int d = -1;
    CHECK_SR(srGetDevice(&d));
    seen_in_thread = d;  // a new thread starts on device 0
    CHECK_SR(srSetDevice(1));
    CHECK_SR(srSetDevice(0));
    CHECK_SR(srGetDevice(&d));
    after_set = d;
    // Allocations follow the thread's device.
    void* p = nullptr;
    CHECK_SR(srMalloc(&p, 4096));
    srPointerAttributes a{};
    CHECK_SR(srPointerGetAttributes(&a, p));
    CHECK_EQ(a.device, 0);
    CHECK_SR(srFree(p));
  });
  t.join();
  CHECK_EQ(seen_in_thread.load(), 0);
  CHECK_EQ(after_set.load(), 0);
  // The other thread's srSetDevice(0) did not move this one.
  CHECK_SR(srGetDevice(&cur));
  CHECK_EQ(cur, 1);
  void* p = nullptr;
  CHECK_SR(srMalloc(&p, 4096));
  srPointerAttributes a{};
  CHECK_SR(srPointerGetAttributes(&a, p));
  CHECK_EQ(a.device, 1);
  CHECK_SR(srFree(p));
  CHECK_SR(srSetDevice(0));
}

TEST(device_properties) {
  const int n = device_count();
  REQUIRE(n >= 1);
  for (int d = 0; d < n; ++d) {
    srDeviceProp p;
    std::memset(&p, 0xEE, sizeof(p));
    REQUIRE_SR(srGetDeviceProperties(&p, d));
    CHECK(std::memchr(p.name, '\0', sizeof(p.name)) != nullptr);  // terminated
    CHECK(std::strlen(p.name) > 0);
    CHECK(p.totalGlobalMem > 0);
    CHECK(p.multiProcessorCount >= 1);
    CHECK(p.major >= 1);
    CHECK(p.minor >= 0);
    CHECK(p.maxThreadsPerBlock >= 1);
    CHECK(p.warpSize >= 1);
    for (int i = 0; i < 3; ++i) CHECK(p.maxGridSize[i] >= 1);
    CHECK(p.sharedMemPerBlock > 0);
    // The capacity matches what srMemGetInfo reports for that device.
    CHECK_SR(srSetDevice(d));
    size_t free_b = 0, total_b = 0;
    CHECK_SR(srMemGetInfo(&free_b, &total_b));
    CHECK_EQ(total_b, p.totalGlobalMem);
    CHECK(free_b <= total_b);
  }
  CHECK_SR(srSetDevice(0));
}

// Child body: SUNRISE_COMPUTE_UNITS=3 and SUNRISE_DEVICE_MEMORY=3GiB.
HIDDEN_TEST(child_compute_units_and_memory) {
  srDeviceProp p;
  REQUIRE_SR(srGetDeviceProperties(&p, 0));
  CHECK_EQ(p.multiProcessorCount, 3);
  CHECK_EQ(p.totalGlobalMem, size_t{3} << 30);
  size_t free_b = 0, total_b = 0;
  CHECK_SR(srMemGetInfo(&free_b, &total_b));
  CHECK_EQ(total_b, size_t{3} << 30);
  CHECK_EQ(free_b, size_t{3} << 30);
  // Every block runs on one of the three units.
  struct Args {
    std::atomic<int>* bad;
    std::atomic<int>* count;
  };
  std::atomic<int> bad{0}, count{0};
  Args a{&bad, &count};
  srStream_t s = nullptr;
  REQUIRE_SR(srDeviceGetDefaultStream(0, &s));
  auto k = +[](const srKernelContext* ctx, void* raw) {
    auto* args = static_cast<Args*>(raw);
    if (ctx->computeUnit < 0 || ctx->computeUnit >= 3) args->bad->fetch_add(1);
    args->count->fetch_add(1);
  };
  CHECK_SR(srLaunchKernel(k, srDim3{300, 1, 1}, srDim3{1, 1, 1}, &a, sizeof(a), s));
  CHECK_SR(srStreamSynchronize(s));
  CHECK_EQ(count.load(), 300);
  CHECK_EQ(bad.load(), 0);
}

TEST(compute_units_and_memory_env) {
  CHECK_EQ(run_child("child_compute_units_and_memory",
                     {{"SUNRISE_COMPUTE_UNITS", "3"}, {"SUNRISE_DEVICE_MEMORY", "3GiB"}}),
           0);
}

// ------------------------------------------------------------------- errors

TEST(error_names_and_strings) {
  for (int e = srSuccess; e <= srErrorInvalidConfiguration; ++e) {
    const srError_t err = static_cast<srError_t>(e);
    const char* name = srGetErrorName(err);
    const char* text = srGetErrorString(err);
    REQUIRE(name != nullptr && text != nullptr);
    CHECK_MSG(std::strncmp(name, "sr", 2) == 0, name);
    CHECK_MSG(std::strcmp(name, "srErrorUnknown") != 0, std::to_string(e));
    CHECK(std::strlen(text) > 0);
  }
  CHECK(std::strcmp(srGetErrorName(srErrorInvalidMemcpyDirection), "srErrorInvalidMemcpyDirection") == 0);
  // Unknown codes still give printable text.
  CHECK(srGetErrorName(static_cast<srError_t>(999)) != nullptr);
  CHECK(srGetErrorString(static_cast<srError_t>(999)) != nullptr);
  CHECK(srGetLastErrorDetail() != nullptr);
}

TEST(error_detail_is_per_thread) {
  CHECK_ERR(srSetDevice(-7), srErrorInvalidDevice);
  const std::string mine = srGetLastErrorDetail();
  CHECK(!mine.empty());
  std::string other = "unset";
  std::thread t([&] {
    other = srGetLastErrorDetail();  // not the main thread's
    CHECK_ERR(srFree(reinterpret_cast<void*>(0x1000)), srErrorInvalidDevicePointer);
  });
  t.join();
  CHECK(other != mine);
  // The other thread's error did not overwrite this thread's detail.
  CHECK_EQ(std::string(srGetLastErrorDetail()), mine);
}

TEST(no_sticky_error_initially) {
  const int n = device_count();
  for (int d = 0; d < n; ++d) {
    CHECK_SR(srSetDevice(d));
    CHECK_SR(srPeekAtLastError());
    CHECK_SR(srGetLastError());
    CHECK_SR(srDeviceSynchronize());
  }
  CHECK_SR(srSetDevice(0));
}
