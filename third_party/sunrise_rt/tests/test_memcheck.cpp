// SUNRISE_MEMCHECK=1: device memory works as usual for copies, sets and
// kernels that go through srKernelAddress; stray accesses fault with a report.
//
// The faulting bodies are hidden tests: tests/test_runtime_native.py runs each
// in its own process and checks that it aborts with the right report.
#include "harness.h"

#include <cstring>
#include <vector>

using namespace srtest;

namespace {

struct FillArgs {
  unsigned char* bytes;  // a kernel address
  size_t count;
  unsigned char value;
};

void fill_kernel(const srKernelContext*, void* raw) {
  const auto* a = static_cast<const FillArgs*>(raw);
  for (size_t i = 0; i < a->count; ++i) a->bytes[i] = a->value;
}

void read_kernel(const srKernelContext*, void* raw) {
  const auto* a = static_cast<const FillArgs*>(raw);
  volatile unsigned char sink = 0;
  for (size_t i = 0; i < a->count; ++i) sink = sink + a->bytes[i];
}

srStream_t default_stream() {
  srStream_t s = nullptr;
  CHECK_SR(srDeviceGetDefaultStream(0, &s));
  return s;
}

}  // namespace

// Child body: SUNRISE_MEMCHECK=1. Everything an API user does still works.
HIDDEN_TEST(child_memcheck_round_trip) {
  srDeviceProp prop{};
  REQUIRE_SR(srGetDeviceProperties(&prop, 0));
  CHECK_EQ(prop.memcheck, 1);
  srStream_t s = default_stream();
  constexpr size_t kBytes = 1000;
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, kBytes));
  CHECK(srKernelAddress(d) != d);
  CHECK_EQ(reinterpret_cast<uintptr_t>(d) % 64, uintptr_t{0});
  srPointerAttributes attr{};
  CHECK_SR(srPointerGetAttributes(&attr, static_cast<char*>(d) + 10));
  CHECK_EQ(attr.type, srMemoryTypeDevice);
  CHECK(attr.base == d);
  CHECK_EQ(attr.size, kBytes);
  // Set, kernel, copies in and out.
  std::vector<unsigned char> host(kBytes, 0);
  CHECK_SR(srMemsetAsync(d, 7, kBytes, s));
  CHECK_SR(srMemcpy(host.data(), d, kBytes, srMemcpyDeviceToHost));
  CHECK_EQ(host[kBytes - 1], 7);
  CHECK_SR(launch1(fill_kernel, FillArgs{static_cast<unsigned char*>(srKernelAddress(d)), kBytes, 9}, s));
  CHECK_SR(srMemcpy(host.data(), d, kBytes, srMemcpyDeviceToHost));
  CHECK_EQ(host[0] + host[kBytes - 1], 18);
  void* e = nullptr;
  REQUIRE_SR(srMalloc(&e, kBytes));
  CHECK_SR(srMemcpyAsync(e, d, kBytes, srMemcpyDeviceToDevice, s));
  std::vector<unsigned char> back(kBytes, 0);
  CHECK_SR(srMemcpy(back.data(), e, kBytes, srMemcpyDeviceToHost));
  CHECK(back == host);
  // Host pointers pass through srKernelAddress unchanged.
  CHECK(srKernelAddress(host.data()) == host.data());
  size_t free_before = 0, total = 0;
  CHECK_SR(srMemGetInfo(&free_before, &total));
  CHECK_SR(srFree(d));
  CHECK_SR(srFree(e));
  size_t free_after = 0;
  CHECK_SR(srMemGetInfo(&free_after, &total));
  CHECK(free_after > free_before);
  CHECK_ERR(srFree(d), srErrorInvalidDevicePointer);
}

TEST(memcheck_round_trip) {
  CHECK_EQ(run_child("child_memcheck_round_trip", {{"SUNRISE_MEMCHECK", "1"}}), 0);
}

TEST(kernel_address_is_identity_without_memcheck) {
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 64));
  CHECK(srKernelAddress(d) == d);
  srDeviceProp prop{};
  CHECK_SR(srGetDeviceProperties(&prop, 0));
  CHECK_EQ(prop.memcheck, 0);
  CHECK_SR(srFree(d));
}

// Child bodies that must abort with a report (SUNRISE_MEMCHECK=1).
HIDDEN_TEST(child_memcheck_host_reads_device_pointer) {
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 100));
  volatile unsigned char* p = static_cast<unsigned char*>(d);
  volatile unsigned char v = p[12];
  (void)v;
}

HIDDEN_TEST(child_memcheck_kernel_writes_past_the_end) {
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 100));
  srStream_t s = default_stream();
  // One byte too many.
  CHECK_SR(launch1(fill_kernel, FillArgs{static_cast<unsigned char*>(srKernelAddress(d)), 129, 1}, s));
  srStreamSynchronize(s);
}

HIDDEN_TEST(child_memcheck_kernel_reads_freed_memory) {
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 256));
  unsigned char* address = static_cast<unsigned char*>(srKernelAddress(d));
  REQUIRE_SR(srFree(d));
  srStream_t s = default_stream();
  CHECK_SR(launch1(read_kernel, FillArgs{address, 256, 0}, s));
  srStreamSynchronize(s);
}
