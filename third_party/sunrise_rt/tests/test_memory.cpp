// Device and pinned memory, pointer attributes, copies and sets.
#include "harness.h"

#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

using namespace srtest;

namespace {

constexpr size_t kMiB = size_t{1} << 20;

// A deterministic byte pattern, different for each seed.
void fill_pattern(unsigned char* p, size_t n, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    p[i] = static_cast<unsigned char>(x >> 24);
  }
}

std::vector<unsigned char> pattern(size_t n, uint32_t seed) {
  std::vector<unsigned char> v(n);
  fill_pattern(v.data(), n, seed);
  return v;
}

// Index of the first differing byte, or -1.
long long first_diff(const void* a, const void* b, size_t n) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  for (size_t i = 0; i < n; ++i)
    if (x[i] != y[i]) return static_cast<long long>(i);
  return -1;
}

// Owns a device allocation on the current device.
struct DevBuf {
  void* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t bytes) : n(bytes) { CHECK_SR(srMalloc(&p, bytes)); }
  ~DevBuf() {
    if (p) CHECK_SR(srFree(p));
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  unsigned char* c() const { return static_cast<unsigned char*>(p); }
};

struct PinnedBuf {
  void* p = nullptr;
  size_t n = 0;
  explicit PinnedBuf(size_t bytes) : n(bytes) { CHECK_SR(srMallocHost(&p, bytes)); }
  ~PinnedBuf() {
    if (p) CHECK_SR(srFreeHost(p));
  }
  PinnedBuf(const PinnedBuf&) = delete;
  PinnedBuf& operator=(const PinnedBuf&) = delete;
  unsigned char* c() const { return static_cast<unsigned char*>(p); }
};

size_t free_bytes() {
  size_t f = 0, t = 0;
  CHECK_SR(srMemGetInfo(&f, &t));
  return f;
}

}  // namespace

// -------------------------------------------------------------- allocation

TEST(malloc_free_accounting) {
  REQUIRE_DEVICES(2);
  size_t free0 = 0, total0 = 0;
  REQUIRE_SR(srMemGetInfo(&free0, &total0));
  CHECK(free0 <= total0);
  void* a = nullptr;
  void* b = nullptr;
  REQUIRE_SR(srMalloc(&a, 3 * kMiB));
  CHECK(a != nullptr);
  CHECK_EQ(free_bytes(), free0 - 3 * kMiB);
  REQUIRE_SR(srMalloc(&b, 5 * kMiB));
  CHECK(b != nullptr && b != a);
  CHECK_EQ(free_bytes(), free0 - 8 * kMiB);
  // Another device's accounting is separate.
  CHECK_SR(srSetDevice(1));
  size_t free1 = free_bytes();
  void* c = nullptr;
  CHECK_SR(srMalloc(&c, 2 * kMiB));
  CHECK_EQ(free_bytes(), free1 - 2 * kMiB);
  CHECK_SR(srSetDevice(0));
  CHECK_EQ(free_bytes(), free0 - 8 * kMiB);
  // srFree releases from the owning device whatever the current device is.
  CHECK_SR(srFree(c));
  CHECK_SR(srSetDevice(1));
  CHECK_EQ(free_bytes(), free1);
  CHECK_SR(srSetDevice(0));
  CHECK_SR(srFree(a));
  CHECK_EQ(free_bytes(), free0 - 5 * kMiB);
  CHECK_SR(srFree(b));
  CHECK_EQ(free_bytes(), free0);
  CHECK_ERR(srMemGetInfo(nullptr, &total0), srErrorInvalidValue);
  CHECK_ERR(srMalloc(nullptr, 16), srErrorInvalidValue);
}

// Child body: SUNRISE_DEVICE_MEMORY=64MiB.
HIDDEN_TEST(child_oom_past_capacity) {
  size_t f = 0, t = 0;
  REQUIRE_SR(srMemGetInfo(&f, &t));
  CHECK_EQ(t, 64 * kMiB);
  CHECK_EQ(f, 64 * kMiB);
  void* p = reinterpret_cast<void*>(0x1);
  CHECK_ERR(srMalloc(&p, 65 * kMiB), srErrorMemoryAllocation);
  CHECK(p == nullptr);
  CHECK_MSG(std::strlen(srGetLastErrorDetail()) > 0, "OOM detail should say what was asked");
  void* a = nullptr;
  REQUIRE_SR(srMalloc(&a, 40 * kMiB));
  void* b = nullptr;
  CHECK_ERR(srMalloc(&b, 40 * kMiB), srErrorMemoryAllocation);
  CHECK(b == nullptr);
  // A failed allocation does not leak accounting.
  CHECK_EQ(free_bytes(), 24 * kMiB);
  // Exactly the remaining capacity still fits.
  void* rest = nullptr;
  CHECK_SR(srMalloc(&rest, 24 * kMiB));
  CHECK_EQ(free_bytes(), size_t{0});
  void* one = nullptr;
  CHECK_ERR(srMalloc(&one, 1), srErrorMemoryAllocation);
  CHECK_SR(srFree(rest));
  // OOM is not sticky: synchronizing calls are fine.
  CHECK_SR(srDeviceSynchronize());
  CHECK_SR(srGetLastError());
  // Device 1 has its own 64 MiB.
  if (device_count() >= 2) {
    CHECK_SR(srSetDevice(1));
    void* d1 = nullptr;
    CHECK_SR(srMalloc(&d1, 40 * kMiB));
    CHECK_SR(srFree(d1));
    CHECK_SR(srSetDevice(0));
  }
  // After freeing, the memory is usable again.
  CHECK_SR(srFree(a));
  CHECK_EQ(free_bytes(), 64 * kMiB);
  void* c = nullptr;
  REQUIRE_SR(srMalloc(&c, 60 * kMiB));
  CHECK_SR(srMemset(c, 0x5A, 60 * kMiB));
  std::vector<unsigned char> host(60 * kMiB);
  CHECK_SR(srMemcpy(host.data(), c, host.size(), srMemcpyDeviceToHost));
  size_t bad = 0;
  for (unsigned char v : host) bad += v != 0x5A;
  CHECK_EQ(bad, size_t{0});
  CHECK_SR(srFree(c));
}

TEST(oom_past_capacity) { CHECK_EQ(run_child("child_oom_past_capacity", {{"SUNRISE_DEVICE_MEMORY", "64MiB"}}), 0); }

// Child body: SUNRISE_DEVICE_MEMORY=16GiB. Allocating 8 GiB must not touch it.
HIDDEN_TEST(child_lazy_reservation) {
  size_t f = 0, t = 0;
  REQUIRE_SR(srMemGetInfo(&f, &t));
  REQUIRE_EQ(t, size_t{16} << 30);
  const size_t rss0 = rss_bytes();
  void* p = nullptr;
  REQUIRE_SR(srMalloc(&p, size_t{8} << 30));
  CHECK_EQ(free_bytes(), size_t{8} << 30);
  const size_t rss1 = rss_bytes();
  CHECK_MSG(rss1 < rss0 + 64 * kMiB, "RSS grew from " + std::to_string(rss0 >> 20) + " MiB to " +
                                          std::to_string(rss1 >> 20) + " MiB after an 8 GiB srMalloc");
  // Touching a little of it backs only that little.
  CHECK_SR(srMemset(p, 1, kMiB));
  CHECK_SR(srMemset(static_cast<char*>(p) + (size_t{8} << 30) - kMiB, 2, kMiB));
  unsigned char last = 0;
  CHECK_SR(srMemcpy(&last, static_cast<char*>(p) + (size_t{8} << 30) - 1, 1, srMemcpyDeviceToHost));
  CHECK_EQ(int(last), 2);
  const size_t rss2 = rss_bytes();
  CHECK_MSG(rss2 < rss0 + 64 * kMiB, "RSS grew to " + std::to_string(rss2 >> 20) + " MiB after touching 2 MiB");
  CHECK_SR(srFree(p));
  CHECK_EQ(free_bytes(), size_t{16} << 30);
}

TEST(lazy_reservation) { CHECK_EQ(run_child("child_lazy_reservation", {{"SUNRISE_DEVICE_MEMORY", "16GiB"}}), 0); }

TEST(malloc_zero_size) {
  const size_t before = free_bytes();
  void* p = reinterpret_cast<void*>(0x1);
  CHECK_SR(srMalloc(&p, 0));
  CHECK_EQ(free_bytes(), before);
  CHECK_SR(srFree(p));  // freeing what a zero-size malloc gave is fine
  CHECK_SR(srFree(nullptr));
  CHECK_SR(srFreeHost(nullptr));
  void* h = reinterpret_cast<void*>(0x1);
  CHECK_SR(srMallocHost(&h, 0));
  CHECK_SR(srFreeHost(h));
  CHECK_EQ(free_bytes(), before);
}

TEST(double_free) {
  void* p = nullptr;
  REQUIRE_SR(srMalloc(&p, 64 * 1024));
  CHECK_SR(srFree(p));
  CHECK_ERR(srFree(p), srErrorInvalidDevicePointer);
  CHECK(std::strlen(srGetLastErrorDetail()) > 0);
  void* h = nullptr;
  REQUIRE_SR(srMallocHost(&h, 4096));
  CHECK_SR(srFreeHost(h));
  CHECK(srFreeHost(h) != srSuccess);
}

TEST(free_non_device_pointer) {
  std::vector<char> heap(4096);
  int on_stack = 0;
  CHECK_ERR(srFree(heap.data()), srErrorInvalidDevicePointer);
  CHECK_ERR(srFree(&on_stack), srErrorInvalidDevicePointer);
  void* h = nullptr;
  REQUIRE_SR(srMallocHost(&h, 4096));
  CHECK_ERR(srFree(h), srErrorInvalidDevicePointer);  // pinned memory goes to srFreeHost
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 8192));
  CHECK_ERR(srFree(static_cast<char*>(d) + 16), srErrorInvalidDevicePointer);  // interior
  CHECK(srFreeHost(d) != srSuccess);  // device memory is not pinned memory
  CHECK(srFreeHost(heap.data()) != srSuccess);
  // Still live after the rejected frees.
  srPointerAttributes a{};
  CHECK_SR(srPointerGetAttributes(&a, d));
  CHECK_EQ(a.type, srMemoryTypeDevice);
  CHECK_SR(srPointerGetAttributes(&a, h));
  CHECK_EQ(a.type, srMemoryTypeHost);
  CHECK_SR(srFree(d));
  CHECK_SR(srFreeHost(h));
}

// ------------------------------------------------------- pointer attributes

TEST(pointer_attributes) {
  REQUIRE_DEVICES(2);
  void* d0 = nullptr;
  void* d1 = nullptr;
  void* h = nullptr;
  REQUIRE_SR(srMalloc(&d0, 64 * 1024));
  CHECK_SR(srSetDevice(1));
  CHECK_SR(srMalloc(&d1, 64 * 1024));
  CHECK_SR(srSetDevice(0));
  REQUIRE_SR(srMallocHost(&h, 64 * 1024));
  std::vector<char> pageable(1024);

  srPointerAttributes a{};
  CHECK_SR(srPointerGetAttributes(&a, d0));
  CHECK_EQ(a.type, srMemoryTypeDevice);
  CHECK_EQ(a.device, 0);
  CHECK_EQ(a.base, d0);
  CHECK_EQ(a.size, size_t{64 * 1024});

  CHECK_SR(srPointerGetAttributes(&a, d1));
  CHECK_EQ(a.type, srMemoryTypeDevice);
  CHECK_EQ(a.device, 1);
  CHECK_EQ(a.base, d1);

  // Interior pointers resolve to their allocation.
  CHECK_SR(srPointerGetAttributes(&a, static_cast<char*>(d0) + 12345));
  CHECK_EQ(a.type, srMemoryTypeDevice);
  CHECK_EQ(a.device, 0);
  CHECK_EQ(a.base, d0);
  CHECK_EQ(a.size, size_t{64 * 1024});
  CHECK_SR(srPointerGetAttributes(&a, static_cast<char*>(d0) + 64 * 1024 - 1));
  CHECK_EQ(a.base, d0);

  CHECK_SR(srPointerGetAttributes(&a, h));
  CHECK_EQ(a.type, srMemoryTypeHost);
  CHECK_EQ(a.device, -1);
  CHECK_EQ(a.base, h);
  CHECK_SR(srPointerGetAttributes(&a, static_cast<char*>(h) + 100));
  CHECK_EQ(a.type, srMemoryTypeHost);
  CHECK_EQ(a.base, h);

  CHECK_SR(srPointerGetAttributes(&a, pageable.data()));
  CHECK_EQ(a.type, srMemoryTypeUnregistered);
  CHECK_EQ(a.device, -1);
  CHECK_SR(srPointerGetAttributes(&a, nullptr));
  CHECK_EQ(a.type, srMemoryTypeUnregistered);
  CHECK_ERR(srPointerGetAttributes(nullptr, d0), srErrorInvalidValue);

  // Freed memory is no longer device memory.
  CHECK_SR(srFree(d0));
  CHECK_SR(srPointerGetAttributes(&a, d0));
  CHECK(a.type != srMemoryTypeDevice || a.base != d0);
  CHECK_SR(srFree(d1));
  CHECK_SR(srFreeHost(h));
  CHECK_SR(srPointerGetAttributes(&a, h));
  CHECK(a.type != srMemoryTypeHost || a.base != h);
}

// The allocation's size is what was asked for, not the page-rounded mapping:
// otherwise bounds checks let copies run past the end of an allocation.
TEST(pointer_attributes_report_requested_size) {
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 1000));
  srPointerAttributes a{};
  CHECK_SR(srPointerGetAttributes(&a, d));
  CHECK_EQ(a.size, size_t{1000});
  void* h = nullptr;
  REQUIRE_SR(srMallocHost(&h, 1000));
  CHECK_SR(srPointerGetAttributes(&a, h));
  CHECK_EQ(a.size, size_t{1000});
  CHECK_SR(srFree(d));
  CHECK_SR(srFreeHost(h));
}

// ------------------------------------------------------------------ copies

TEST(memcpy_all_kinds) {
  const size_t n = 256 * 1024 + 3;
  const auto src = pattern(n, 1);
  DevBuf a(n), b(n);
  REQUIRE(a.p && b.p);
  CHECK_SR(srMemcpy(a.p, src.data(), n, srMemcpyHostToDevice));
  CHECK_SR(srMemcpy(b.p, a.p, n, srMemcpyDeviceToDevice));
  std::vector<unsigned char> out(n, 0);
  CHECK_SR(srMemcpy(out.data(), b.p, n, srMemcpyDeviceToHost));
  CHECK_EQ(first_diff(out.data(), src.data(), n), -1LL);
  std::vector<unsigned char> hh(n, 0);
  CHECK_SR(srMemcpy(hh.data(), src.data(), n, srMemcpyHostToHost));
  CHECK_EQ(first_diff(hh.data(), src.data(), n), -1LL);
  // Partial and offset copies.
  const auto src2 = pattern(1000, 2);
  CHECK_SR(srMemcpy(a.c() + 777, src2.data(), 1000, srMemcpyHostToDevice));
  CHECK_SR(srMemcpy(out.data(), a.p, n, srMemcpyDeviceToHost));
  CHECK_EQ(first_diff(out.data(), src.data(), 777), -1LL);
  CHECK_EQ(first_diff(out.data() + 777, src2.data(), 1000), -1LL);
  CHECK_EQ(first_diff(out.data() + 1777, src.data() + 1777, n - 1777), -1LL);
  // Zero-byte copies are no-ops.
  CHECK_SR(srMemcpy(out.data(), a.p, 0, srMemcpyDeviceToHost));
  // Async variants on a created stream.
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  const auto src3 = pattern(n, 3);
  CHECK_SR(srMemcpyAsync(a.p, src3.data(), n, srMemcpyHostToDevice, s));
  CHECK_SR(srMemcpyAsync(b.p, a.p, n, srMemcpyDeviceToDevice, s));
  std::vector<unsigned char> out3(n, 0);
  CHECK_SR(srMemcpyAsync(out3.data(), b.p, n, srMemcpyDeviceToHost, s));
  CHECK_SR(srStreamSynchronize(s));
  CHECK_EQ(first_diff(out3.data(), src3.data(), n), -1LL);
  CHECK_SR(srStreamDestroy(s));
}

TEST(memcpy_across_devices) {
  REQUIRE_DEVICES(2);
  const size_t n = 1 * kMiB + 17;
  const auto src = pattern(n, 4);
  void* d0 = nullptr;
  void* d1 = nullptr;
  REQUIRE_SR(srMalloc(&d0, n));
  CHECK_SR(srSetDevice(1));
  REQUIRE_SR(srMalloc(&d1, n));
  CHECK_SR(srSetDevice(0));
  CHECK_SR(srMemcpy(d0, src.data(), n, srMemcpyHostToDevice));
  CHECK_SR(srMemcpy(d1, d0, n, srMemcpyDeviceToDevice));
  std::vector<unsigned char> out(n, 0);
  CHECK_SR(srMemcpy(out.data(), d1, n, srMemcpyDeviceToHost));
  CHECK_EQ(first_diff(out.data(), src.data(), n), -1LL);
  // Back again, asynchronously on each device's streams.
  const auto src2 = pattern(n, 5);
  srStream_t s0 = nullptr, s1 = nullptr;
  CHECK_SR(srDeviceGetDefaultStream(0, &s0));
  CHECK_SR(srDeviceGetDefaultStream(1, &s1));
  CHECK_SR(srMemcpy(d1, src2.data(), n, srMemcpyHostToDevice));
  CHECK_SR(srMemcpyAsync(d0, d1, n, srMemcpyDeviceToDevice, s1));
  CHECK_SR(srStreamSynchronize(s1));
  CHECK_SR(srMemcpy(out.data(), d0, n, srMemcpyDeviceToHost));
  CHECK_EQ(first_diff(out.data(), src2.data(), n), -1LL);
  CHECK_SR(srMemset(d0, 0x11, n));
  CHECK_SR(srMemcpyAsync(d1, d0, n, srMemcpyDefault, s0));
  CHECK_SR(srStreamSynchronize(s0));
  CHECK_SR(srMemcpy(out.data(), d1, n, srMemcpyDeviceToHost));
  CHECK_EQ(out[0], 0x11);
  CHECK_EQ(out[n - 1], 0x11);
  CHECK_SR(srFree(d0));
  CHECK_SR(srFree(d1));
}

// srMemcpy is synchronous "as cudaMemcpy": for a copy between devices it must
// wait for pending work on the source device too, not only the destination's.
TEST(memcpy_across_devices_waits_for_source_device) {
  REQUIRE_DEVICES(2);
  const size_t n = 4096;
  void* src = nullptr;
  void* dst = nullptr;
  REQUIRE_SR(srMalloc(&src, n));
  CHECK_SR(srSetDevice(1));
  REQUIRE_SR(srMalloc(&dst, n));
  CHECK_SR(srSetDevice(0));
  CHECK_SR(srMemset(src, 0xAA, n));
  CHECK_SR(srMemset(dst, 0x00, n));
  // Device 0 work that rewrites the source after a while (it waits 150 ms for
  // a gate nobody opens; a correct srMemcpy simply waits it out).
  struct Args {
    Gate* gate;
    void* src;
    size_t n;
  };
  Gate gate;
  gate.timeout_ms = 150;
  Args args{&gate, src, n};
  srStream_t s0 = nullptr;
  REQUIRE_SR(srStreamCreate(&s0));
  auto k = +[](const srKernelContext*, void* raw) {
    auto* a = static_cast<Args*>(raw);
    a->gate->pass();
    std::memset(a->src, 0xBB, a->n);
  };
  CHECK_SR(launch1(k, args, s0));
  CHECK_SR(srMemcpy(dst, src, n, srMemcpyDeviceToDevice));
  unsigned char out[4] = {};
  CHECK_SR(srMemcpy(out, dst, 4, srMemcpyDeviceToHost));
  CHECK_MSG(out[0] == 0xBB, "srMemcpy(dev1 <- dev0) copied before device 0's queued kernel wrote the source");
  CHECK_SR(srStreamSynchronize(s0));
  CHECK_SR(srStreamDestroy(s0));
  CHECK_SR(srFree(src));
  CHECK_SR(srFree(dst));
}

TEST(memcpy_sync_waits_for_device_streams) {
  // srMemcpy D2H waits for work queued on any stream of the device.
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 4096));
  CHECK_SR(srMemset(d, 0, 4096));
  struct Args {
    Gate* gate;
    void* d;
  };
  Gate gate;
  gate.timeout_ms = 100;
  Args args{&gate, d};
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  auto k = +[](const srKernelContext*, void* raw) {
    auto* a = static_cast<Args*>(raw);
    a->gate->pass();
    std::memset(a->d, 0x77, 4096);
  };
  CHECK_SR(launch1(k, args, s));
  unsigned char out = 0;
  CHECK_SR(srMemcpy(&out, static_cast<char*>(d) + 4095, 1, srMemcpyDeviceToHost));
  CHECK_EQ(int(out), 0x77);
  CHECK_SR(srStreamDestroy(s));
  CHECK_SR(srFree(d));
}

TEST(memcpy_wrong_kind) {
  DevBuf d(4096);
  std::vector<unsigned char> h(4096, 1);
  PinnedBuf p(4096);
  REQUIRE(d.p && p.p);
  // Device pointer where the kind says host.
  CHECK_ERR(srMemcpy(d.p, h.data(), 4096, srMemcpyDeviceToHost), srErrorInvalidMemcpyDirection);
  CHECK_ERR(srMemcpy(h.data(), d.p, 4096, srMemcpyHostToHost), srErrorInvalidMemcpyDirection);
  CHECK_ERR(srMemcpy(d.p, d.p, 4096, srMemcpyHostToHost), srErrorInvalidMemcpyDirection);
  CHECK_ERR(srMemcpy(p.p, d.p, 4096, srMemcpyHostToHost), srErrorInvalidMemcpyDirection);
  CHECK_ERR(srMemcpy(d.p, p.p, 4096, srMemcpyDeviceToHost), srErrorInvalidMemcpyDirection);
  CHECK_ERR(srMemcpy(d.p, d.p, 4096, static_cast<srMemcpyKind>(42)), srErrorInvalidMemcpyDirection);
  srStream_t s = nullptr;
  CHECK_SR(srDeviceGetDefaultStream(0, &s));
  CHECK_ERR(srMemcpyAsync(d.p, h.data(), 4096, srMemcpyDeviceToHost, s), srErrorInvalidMemcpyDirection);
  CHECK_ERR(srMemcpyAsync(d.p, p.p, 4096, srMemcpyDeviceToHost, s), srErrorInvalidMemcpyDirection);
  CHECK(srMemcpy(h.data(), h.data() + 1, 16, srMemcpyDeviceToDevice) != srSuccess);
  // Nothing was copied and nothing became sticky.
  CHECK_SR(srStreamSynchronize(s));
  CHECK_SR(srDeviceSynchronize());
}

// The kind says the destination is device memory, but it is host memory while
// the source is device memory: the kind does not match the pointers.
TEST(memcpy_wrong_kind_host_destination) {
  DevBuf d(4096);
  std::vector<unsigned char> h(4096, 1);
  PinnedBuf p(4096);
  REQUIRE(d.p && p.p);
  // Arguments swapped relative to the kind (the classic mistake).
  CHECK_ERR(srMemcpy(h.data(), d.p, 4096, srMemcpyHostToDevice), srErrorInvalidMemcpyDirection);
  // Pinned memory is known host memory: never a valid device side.
  CHECK_ERR(srMemcpy(p.p, d.p, 4096, srMemcpyHostToDevice), srErrorInvalidMemcpyDirection);
  CHECK_ERR(srMemcpy(d.p, p.p, 4096, srMemcpyDeviceToDevice), srErrorInvalidMemcpyDirection);
  srStream_t s = nullptr;
  CHECK_SR(srDeviceGetDefaultStream(0, &s));
  CHECK_ERR(srMemcpyAsync(p.p, d.p, 4096, srMemcpyHostToDevice, s), srErrorInvalidMemcpyDirection);
}

TEST(memcpy_out_of_bounds) {
  DevBuf d(kMiB);
  PinnedBuf p(64 * 1024);
  REQUIRE(d.p && p.p);
  std::vector<unsigned char> h(2 * kMiB);
  CHECK_ERR(srMemcpy(d.p, h.data(), kMiB + 1, srMemcpyHostToDevice), srErrorInvalidValue);
  CHECK(std::strlen(srGetLastErrorDetail()) > 0);
  CHECK_ERR(srMemcpy(h.data(), d.p, kMiB + 1, srMemcpyDeviceToHost), srErrorInvalidValue);
  CHECK_ERR(srMemcpy(d.c() + kMiB / 2, h.data(), kMiB / 2 + 1, srMemcpyHostToDevice), srErrorInvalidValue);
  CHECK_SR(srMemcpy(d.c() + kMiB / 2, h.data(), kMiB / 2, srMemcpyHostToDevice));  // exactly fits
  CHECK_ERR(srMemcpy(d.p, d.c() + 1, kMiB, srMemcpyDeviceToDevice), srErrorInvalidValue);
  // Pinned buffers are bounds-checked too.
  CHECK_ERR(srMemcpy(d.p, p.p, 64 * 1024 + 4096, srMemcpyHostToDevice), srErrorInvalidValue);
  srStream_t s = nullptr;
  CHECK_SR(srDeviceGetDefaultStream(0, &s));
  CHECK_ERR(srMemcpyAsync(d.p, h.data(), kMiB + 1, srMemcpyHostToDevice, s), srErrorInvalidValue);
  CHECK_ERR(srMemsetAsync(d.c() + 10, 0, kMiB, s), srErrorInvalidValue);
  CHECK_ERR(srMemset(d.p, 0, kMiB + 1), srErrorInvalidValue);
  CHECK_SR(srStreamSynchronize(s));
}

// A range past the end of an allocation whose size is not a page multiple.
TEST(memcpy_out_of_bounds_unaligned_size) {
  DevBuf d(1000);
  REQUIRE(d.p);
  std::vector<unsigned char> h(8192);
  CHECK_SR(srMemcpy(d.p, h.data(), 1000, srMemcpyHostToDevice));
  CHECK_ERR(srMemcpy(d.p, h.data(), 1001, srMemcpyHostToDevice), srErrorInvalidValue);
  CHECK_ERR(srMemcpy(h.data(), d.c() + 999, 2, srMemcpyDeviceToHost), srErrorInvalidValue);
  CHECK_ERR(srMemset(d.p, 0, 4096), srErrorInvalidValue);
}

TEST(memcpy_freed_pointer) {
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 64 * 1024));
  CHECK_SR(srFree(d));
  std::vector<unsigned char> h(64 * 1024);
  CHECK(srMemcpy(h.data(), d, 4096, srMemcpyDeviceToHost) != srSuccess);
  CHECK(srMemcpy(d, h.data(), 4096, srMemcpyHostToDevice) != srSuccess);
  CHECK(srMemset(d, 0, 4096) != srSuccess);
  srStream_t s = nullptr;
  CHECK_SR(srDeviceGetDefaultStream(0, &s));
  CHECK(srMemcpyAsync(d, h.data(), 4096, srMemcpyHostToDevice, s) != srSuccess);
  CHECK(srMemsetAsync(d, 0, 4096, s) != srSuccess);
  CHECK_ERR(srMemcpy(h.data(), nullptr, 16, srMemcpyDeviceToHost), srErrorInvalidValue);
  CHECK_SR(srStreamSynchronize(s));
}

TEST(memcpy_default_inference) {
  const size_t n = 10000;
  const auto src = pattern(n, 6);
  DevBuf a(n), b(n);
  PinnedBuf p(n);
  REQUIRE(a.p && b.p && p.p);
  CHECK_SR(srMemcpy(a.p, src.data(), n, srMemcpyDefault));  // H2D
  CHECK_SR(srMemcpy(b.p, a.p, n, srMemcpyDefault));         // D2D
  std::vector<unsigned char> out(n, 0);
  CHECK_SR(srMemcpy(out.data(), b.p, n, srMemcpyDefault));  // D2H
  CHECK_EQ(first_diff(out.data(), src.data(), n), -1LL);
  CHECK_SR(srMemcpy(p.p, out.data(), n, srMemcpyDefault));  // H2H (pinned <- pageable)
  CHECK_EQ(first_diff(p.p, src.data(), n), -1LL);
  CHECK_SR(srMemset(a.p, 0, n));
  CHECK_SR(srMemcpy(a.p, p.p, n, srMemcpyDefault));  // pinned -> device
  std::fill(out.begin(), out.end(), 0);
  CHECK_SR(srMemcpy(out.data(), a.p, n, srMemcpyDefault));
  CHECK_EQ(first_diff(out.data(), src.data(), n), -1LL);
  // Inference still bounds-checks.
  CHECK_ERR(srMemcpy(a.p, src.data(), n + 4096, srMemcpyDefault), srErrorInvalidValue);
}

TEST(memcpy_large_64mib) {
  const size_t n = 64 * kMiB;
  std::vector<unsigned char> src(n);
  // Cheap pattern that differs in every 4 KiB page and every byte position.
  for (size_t i = 0; i < n; ++i) src[i] = static_cast<unsigned char>((i * 131) ^ (i >> 12));
  DevBuf a(n), b(n);
  REQUIRE(a.p && b.p);
  CHECK_SR(srMemcpy(a.p, src.data(), n, srMemcpyHostToDevice));
  CHECK_SR(srMemcpy(b.p, a.p, n, srMemcpyDeviceToDevice));
  std::vector<unsigned char> out(n, 0);
  CHECK_SR(srMemcpy(out.data(), b.p, n, srMemcpyDeviceToHost));
  CHECK_EQ(first_diff(out.data(), src.data(), n), -1LL);
  // Unaligned, odd-sized large async copy within the buffers.
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  const size_t off = 4097, len = n - 2 * off - 3;
  CHECK_SR(srMemsetAsync(b.p, 0, n, s));
  CHECK_SR(srMemcpyAsync(b.c() + off, a.c() + off + 1, len, srMemcpyDeviceToDevice, s));
  CHECK_SR(srMemcpyAsync(out.data(), b.p, n, srMemcpyDeviceToHost, s));
  CHECK_SR(srStreamSynchronize(s));
  CHECK_EQ(out[off - 1], 0);
  CHECK_EQ(first_diff(out.data() + off, src.data() + off + 1, len), -1LL);
  CHECK_EQ(out[off + len], 0);
  CHECK_SR(srStreamDestroy(s));
}

// ------------------------------------------------------------------- sets

TEST(memset_and_memset_async) {
  const size_t n = 12 * kMiB + 5;  // above the chunked-copy threshold
  DevBuf d(n);
  REQUIRE(d.p);
  std::vector<unsigned char> out(n);
  CHECK_SR(srMemset(d.p, 0xAB, n));
  CHECK_SR(srMemcpy(out.data(), d.p, n, srMemcpyDeviceToHost));
  size_t bad = 0;
  for (unsigned char v : out) bad += v != 0xAB;
  CHECK_EQ(bad, size_t{0});
  // Only the low byte of the value is used; partial range at an offset.
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  CHECK_SR(srMemsetAsync(d.c() + 100, 0x1FF, 1000, s));
  CHECK_SR(srMemsetAsync(d.c() + 5000, 0, n - 5000, s));
  CHECK_SR(srMemcpyAsync(out.data(), d.p, n, srMemcpyDeviceToHost, s));
  CHECK_SR(srStreamSynchronize(s));
  CHECK_EQ(int(out[99]), 0xAB);
  CHECK_EQ(int(out[100]), 0xFF);
  CHECK_EQ(int(out[1099]), 0xFF);
  CHECK_EQ(int(out[1100]), 0xAB);
  CHECK_EQ(int(out[4999]), 0xAB);
  bad = 0;
  for (size_t i = 5000; i < n; ++i) bad += out[i] != 0;
  CHECK_EQ(bad, size_t{0});
  // Zero bytes is a no-op; host memory is not a memset target.
  CHECK_SR(srMemset(d.p, 1, 0));
  CHECK_SR(srMemsetAsync(d.p, 1, 0, s));
  CHECK(srMemset(out.data(), 0, 16) != srSuccess);
  CHECK(srMemsetAsync(out.data(), 0, 16, s) != srSuccess);
  CHECK_SR(srStreamDestroy(s));
}

// ------------------------------------------------------------ pinned memory

TEST(pinned_memory_async_copy) {
  const size_t n = 16 * kMiB + 123;  // above the chunked-copy threshold
  PinnedBuf src(n), dst(n);
  DevBuf d(n);
  REQUIRE(src.p && dst.p && d.p);
  srPointerAttributes a{};
  CHECK_SR(srPointerGetAttributes(&a, src.p));
  CHECK_EQ(a.type, srMemoryTypeHost);
  fill_pattern(src.c(), n, 7);
  std::memset(dst.p, 0, n);
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  Gate gate;
  GateOpener opener(gate);
  // Hold the stream so the copies are certainly queued when their calls return.
  CHECK_SR(srLaunchHostFunc(s, gate_host_fn, &gate));
  CHECK_SR(srMemcpyAsync(d.p, src.p, n, srMemcpyHostToDevice, s));
  CHECK_SR(srMemcpyAsync(dst.p, d.p, n, srMemcpyDeviceToHost, s));
  // The calls returned while the stream is blocked: pinned copies are async.
  CHECK_EQ(srStreamQuery(s), srErrorNotReady);
  CHECK_EQ(dst.c()[0], 0);
  gate.release();
  CHECK_SR(srStreamSynchronize(s));
  CHECK_EQ(gate.timed_out.load(), 0);
  CHECK_EQ(first_diff(dst.p, src.p, n), -1LL);
  CHECK_SR(srStreamDestroy(s));
}

// A pageable host buffer may be reused as soon as srMemcpyAsync returns.
TEST(pageable_async_copy_completes_before_return) {
  const size_t n = 2 * kMiB;
  DevBuf d(n);
  REQUIRE(d.p);
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  auto src = pattern(n, 8);
  CHECK_SR(srMemcpyAsync(d.p, src.data(), n, srMemcpyHostToDevice, s));
  std::fill(src.begin(), src.end(), 0);  // reuse the buffer at once
  std::vector<unsigned char> out(n, 0);
  CHECK_SR(srMemcpyAsync(out.data(), d.p, n, srMemcpyDeviceToHost, s));
  // No synchronize: the D2H into pageable memory has already run.
  const auto want = pattern(n, 8);
  CHECK_EQ(first_diff(out.data(), want.data(), n), -1LL);
  CHECK_SR(srStreamDestroy(s));
}

TEST(free_waits_for_pending_work) {
  // srFree waits for queued work that still writes the allocation.
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, 1 * kMiB));
  struct Args {
    Gate* gate;
    void* d;
    std::atomic<int>* done;
  };
  Gate gate;
  gate.timeout_ms = 100;
  std::atomic<int> done{0};
  Args args{&gate, d, &done};
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  auto k = +[](const srKernelContext*, void* raw) {
    auto* a = static_cast<Args*>(raw);
    a->gate->pass();
    std::memset(a->d, 1, 1 * kMiB);  // would fault if the memory were gone
    a->done->store(1);
  };
  CHECK_SR(launch1(k, args, s));
  CHECK_SR(srFree(d));
  CHECK_EQ(done.load(), 1);
  CHECK_SR(srStreamDestroy(s));
}

// ------------------------------------------------------ sizes and threads

TEST(malloc_huge_sizes_fail_cleanly) {
  const size_t before = free_bytes();
  void* p = reinterpret_cast<void*>(0x1);
  CHECK_ERR(srMalloc(&p, SIZE_MAX), srErrorMemoryAllocation);
  CHECK(p == nullptr);
  CHECK_ERR(srMalloc(&p, SIZE_MAX - 4095), srErrorMemoryAllocation);
  CHECK_ERR(srMalloc(&p, size_t{1} << 62), srErrorMemoryAllocation);
  CHECK_EQ(free_bytes(), before);
  void* h = reinterpret_cast<void*>(0x1);
  CHECK_ERR(srMallocHost(&h, SIZE_MAX), srErrorHostMemoryAllocation);
  CHECK(h == nullptr);
  CHECK_ERR(srMallocHost(nullptr, 16), srErrorInvalidValue);
}

// Child body: a count so large that pointer + count wraps around must be
// rejected by the bounds check, not copied (or silently skipped).
HIDDEN_TEST(child_huge_count_rejected) {
  void* d = nullptr;
  REQUIRE_SR(srMalloc(&d, kMiB));
  CHECK_SR(srMemset(d, 0x66, kMiB));
  std::vector<unsigned char> h(kMiB, 0);
  srStream_t s = nullptr;
  REQUIRE_SR(srStreamCreate(&s));
  CHECK_ERR(srMemcpy(h.data(), d, SIZE_MAX, srMemcpyDeviceToHost), srErrorInvalidValue);
  CHECK_ERR(srMemcpy(d, h.data(), SIZE_MAX - 4095, srMemcpyHostToDevice), srErrorInvalidValue);
  CHECK_ERR(srMemcpy(static_cast<char*>(d) + 4096, d, SIZE_MAX - 4095, srMemcpyDeviceToDevice), srErrorInvalidValue);
  CHECK_ERR(srMemset(d, 0, SIZE_MAX), srErrorInvalidValue);
  CHECK_ERR(srMemsetAsync(d, 0, SIZE_MAX - 8 * kMiB, s), srErrorInvalidValue);
  CHECK_ERR(srMemcpyAsync(h.data(), d, SIZE_MAX, srMemcpyDeviceToHost, s), srErrorInvalidValue);
  CHECK_SR(srStreamSynchronize(s));
  CHECK_SR(srStreamDestroy(s));
  CHECK_SR(srFree(d));
}

TEST(memcpy_huge_count_rejected) {
  // In child processes: the bug this guards against can crash.
  CHECK_EQ(run_child("child_huge_count_rejected", {}), 0);
  CHECK_EQ(run_child("child_huge_count_rejected", {{"SUNRISE_COMPUTE_UNITS", "1"}}), 0);
}

TEST(malloc_free_from_many_threads) {
  const size_t before = free_bytes();
  constexpr int kThreads = 4, kIters = 200;
  std::vector<std::thread> threads;
  std::atomic<int> corrupt{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<void*> live;
      for (int i = 0; i < kIters; ++i) {
        void* p = nullptr;
        const size_t size = size_t(1 + (i * 7 + t) % 16) * 4096;
        if (srMalloc(&p, size) != srSuccess) {
          SRT_FAIL(std::string("srMalloc failed: ") + srGetLastErrorDetail());
          break;
        }
        const unsigned char tag = static_cast<unsigned char>(t * 50 + i % 50);
        CHECK_SR(srMemset(p, tag, size));
        unsigned char back = 0;
        CHECK_SR(srMemcpy(&back, static_cast<char*>(p) + size - 1, 1, srMemcpyDeviceToHost));
        if (back != tag) corrupt.fetch_add(1);
        live.push_back(p);
        if (live.size() > 4) {
          CHECK_SR(srFree(live.front()));
          live.erase(live.begin());
        }
      }
      for (void* p : live) CHECK_SR(srFree(p));
    });
  }
  for (auto& t : threads) t.join();
  CHECK_EQ(corrupt.load(), 0);
  CHECK_EQ(free_bytes(), before);
}

TEST(concurrent_double_free) {
  // Two threads free the same pointer at once: exactly one succeeds.
  for (int round = 0; round < 20; ++round) {
    void* p = nullptr;
    REQUIRE_SR(srMalloc(&p, 64 * 1024));
    std::atomic<int> ready{0}, ok{0}, invalid{0};
    auto body = [&] {
      ready.fetch_add(1);
      wait_until([&] { return ready.load() >= 2; }, 2000);
      const srError_t e = srFree(p);
      if (e == srSuccess) ok.fetch_add(1);
      else if (e == srErrorInvalidDevicePointer) invalid.fetch_add(1);
    };
    std::thread a(body), b(body);
    a.join();
    b.join();
    CHECK_EQ(ok.load(), 1);
    CHECK_EQ(invalid.load(), 1);
  }
}
