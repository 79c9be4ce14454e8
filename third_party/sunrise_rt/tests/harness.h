// A tiny test harness for sunrise_rt: no external framework, nothing aborts.
//
//   TEST(name) { ... }          registers a test (listed, run by default)
//   HIDDEN_TEST(name) { ... }   registers a test that only runs when named,
//                               used as the body of re-exec'd child processes
//   CHECK(cond)                 records a failure and continues
//   CHECK_EQ(a, b)              same, printing both values
//   CHECK_SR(call)              expects srSuccess; prints name + detail otherwise
//   CHECK_ERR(call, err)        expects a specific srError_t
//   REQUIRE*(...)               as CHECK*, but returns from the test on failure
//
// Checks are thread-safe: failures are counted with an atomic, so they may be
// made from helper threads, kernels and host functions alike.
#pragma once

#include "sunrise_rt.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace srtest {

using TestFn = void (*)();

struct TestCase {
  const char* name;
  TestFn fn;
  bool hidden;
};

std::vector<TestCase>& registry();

struct Registrar {
  Registrar(const char* name, TestFn fn, bool hidden) { registry().push_back({name, fn, hidden}); }
};

// Failures recorded by the running test.
extern std::atomic<int> g_failures;

// Prints one failure line (serialised across threads).
void report_failure(const char* file, int line, const std::string& message);

// ------------------------------------------------------------ value printing

inline std::string to_text(srError_t e) { return srGetErrorName(e); }
inline std::string to_text(const char* s) { return s ? std::string("\"") + s + "\"" : "NULL"; }
inline std::string to_text(const std::string& s) { return "\"" + s + "\""; }
inline std::string to_text(const void* p) {
  std::ostringstream o;
  o << p;
  return o.str();
}
inline std::string to_text(bool b) { return b ? "true" : "false"; }
template <typename T>
std::string to_text(const T& v) {
  if constexpr (std::is_same_v<T, unsigned char> || std::is_same_v<T, signed char> || std::is_same_v<T, char>) {
    return std::to_string(static_cast<int>(v));
  } else if constexpr (std::is_enum_v<T>) {
    return std::to_string(static_cast<long long>(v));
  } else if constexpr (std::is_pointer_v<T>) {
    return to_text(static_cast<const void*>(v));
  } else {
    std::ostringstream o;
    o << v;
    return o.str();
  }
}

// Returns true when a == b; records a failure otherwise.
template <typename A, typename B>
bool check_eq(const A& a, const B& b, const char* ea, const char* eb, const char* file, int line) {
  if (a == b) return true;
  report_failure(file, line,
                 std::string("CHECK_EQ(") + ea + ", " + eb + "): " + to_text(a) + " != " + to_text(b));
  return false;
}

inline bool check_err(srError_t got, srError_t want, const char* expr, const char* file, int line) {
  if (got == want) return true;
  std::string msg = std::string(expr) + " returned " + srGetErrorName(got) + ", expected " + srGetErrorName(want);
  if (got != srSuccess) msg += std::string(" (detail: ") + srGetLastErrorDetail() + ")";
  report_failure(file, line, msg);
  return false;
}

// ------------------------------------------------------------------- helpers

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Polls pred until it holds or timeout_ms elapses. Sleeps briefly between
// polls so a waiting thread never starves the threads it waits for.
template <typename Pred>
bool wait_until(Pred pred, int timeout_ms = 5000) {
  const int64_t deadline = now_ns() + int64_t{timeout_ms} * 1'000'000;
  for (;;) {
    if (pred()) return true;
    if (now_ns() > deadline) return pred();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// Busy-waits (with yields) for at least `ms` milliseconds of wall time.
inline void spin_for_ms(double ms) {
  const int64_t end = now_ns() + static_cast<int64_t>(ms * 1e6);
  while (now_ns() < end) std::this_thread::yield();
}

// A gate that device work can block on until the test opens it. A blocked
// waiter gives up after timeout_ms, so a failing test never hangs; whether it
// timed out is recorded.
struct Gate {
  std::atomic<int> open{0};
  std::atomic<int> entered{0};   // how many waiters have started waiting
  std::atomic<int> timed_out{0};
  int timeout_ms = 5000;

  void release() { open.store(1, std::memory_order_release); }
  // Blocks until released; returns false on timeout.
  bool pass() {
    entered.fetch_add(1, std::memory_order_acq_rel);
    if (wait_until([this] { return open.load(std::memory_order_acquire) != 0; }, timeout_ms)) return true;
    timed_out.fetch_add(1);
    return false;
  }
  // Waits until `n` waiters are inside pass().
  bool wait_entered(int n = 1, int timeout = 5000) {
    return wait_until([this, n] { return entered.load(std::memory_order_acquire) >= n; }, timeout);
  }
};

// Opens the gate when the scope ends, so early returns never leave device
// threads blocked.
struct GateOpener {
  Gate& g;
  explicit GateOpener(Gate& gate) : g(gate) {}
  ~GateOpener() { g.release(); }
  GateOpener(const GateOpener&) = delete;
  GateOpener& operator=(const GateOpener&) = delete;
};

// srHostFn_t that blocks on a Gate*.
inline void gate_host_fn(void* gate) { static_cast<Gate*>(gate)->pass(); }

// Kernel that blocks on the Gate* passed by value as its argument bytes.
inline void gate_kernel(const srKernelContext*, void* args) {
  Gate* g = nullptr;
  std::memcpy(&g, args, sizeof(g));
  g->pass();
}

// Launches a single-block kernel with a trivially copyable argument struct.
template <typename Args>
srError_t launch1(srKernel_t k, const Args& args, srStream_t s) {
  static_assert(std::is_trivially_copyable_v<Args>, "kernel args are copied bytewise");
  return srLaunchKernel(k, srDim3{1, 1, 1}, srDim3{1, 1, 1}, &args, sizeof(Args), s);
}

// Number of devices the runtime reports (0 on error).
int device_count();

// Process resident set size in bytes, from /proc/self/statm.
size_t rss_bytes();

// Re-executes this test binary running test `name` with the environment
// modified: each (var, value) pair sets var, or unsets it when value is NULL.
// Returns the child's exit code, or -1 if it crashed or timed out (the child
// is killed after timeout_ms).
int run_child(const char* name, const std::vector<std::pair<const char*, const char*>>& env,
              int timeout_ms = 20000);

// True when `haystack` contains `needle`.
inline bool contains(const char* haystack, const std::string& needle) {
  return haystack != nullptr && std::strstr(haystack, needle.c_str()) != nullptr;
}

}  // namespace srtest

#define SRT_CAT2(a, b) a##b
#define SRT_CAT(a, b) SRT_CAT2(a, b)

#define TEST(name)                                                                         \
  static void srt_test_##name();                                                           \
  static ::srtest::Registrar SRT_CAT(srt_reg_, name)(#name, &srt_test_##name, false);      \
  static void srt_test_##name()

#define HIDDEN_TEST(name)                                                                  \
  static void srt_test_##name();                                                           \
  static ::srtest::Registrar SRT_CAT(srt_reg_, name)(#name, &srt_test_##name, true);       \
  static void srt_test_##name()

#define SRT_FAIL(msg) ::srtest::report_failure(__FILE__, __LINE__, (msg))

#define CHECK(cond)                                         \
  do {                                                      \
    if (!(cond)) SRT_FAIL(std::string("CHECK(") + #cond + ") failed"); \
  } while (0)

#define CHECK_MSG(cond, msg)                                                      \
  do {                                                                            \
    if (!(cond)) SRT_FAIL(std::string("CHECK(") + #cond + ") failed: " + (msg)); \
  } while (0)

#define CHECK_EQ(a, b) ((void)::srtest::check_eq((a), (b), #a, #b, __FILE__, __LINE__))
#define CHECK_ERR(call, err) ((void)::srtest::check_err((call), (err), #call, __FILE__, __LINE__))
#define CHECK_SR(call) CHECK_ERR(call, srSuccess)

#define REQUIRE(cond)                                                     \
  do {                                                                    \
    if (!(cond)) {                                                        \
      SRT_FAIL(std::string("REQUIRE(") + #cond + ") failed");             \
      return;                                                             \
    }                                                                     \
  } while (0)

#define REQUIRE_EQ(a, b)                                                            \
  do {                                                                              \
    if (!::srtest::check_eq((a), (b), #a, #b, __FILE__, __LINE__)) return;         \
  } while (0)

#define REQUIRE_ERR(call, err)                                                      \
  do {                                                                              \
    if (!::srtest::check_err((call), (err), #call, __FILE__, __LINE__)) return;     \
  } while (0)

#define REQUIRE_SR(call) REQUIRE_ERR(call, srSuccess)

// Fails (and returns) unless the runtime has at least n devices.
#define REQUIRE_DEVICES(n)                                                                   \
  do {                                                                                       \
    if (::srtest::device_count() < (n)) {                                                    \
      SRT_FAIL("this test needs " + std::to_string(n) + " devices; SUNRISE_DEVICE_COUNT=" + \
               std::to_string(::srtest::device_count()));                                    \
      return;                                                                                \
    }                                                                                        \
  } while (0)
