// Test runner for sunrise_rt.
//
//   sunrise_rt_tests            runs every listed test, ends with "N passed, M failed"
//   sunrise_rt_tests --list     prints the listed test names, one per line
//   sunrise_rt_tests NAME       runs one test (listed or hidden); exit 0 pass, 1 fail
//
// Tests that need a different environment (SUNRISE_* variables are read once,
// at the runtime's first use) re-execute this binary with run_child().
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <mutex>

extern char** environ;

namespace srtest {

std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

std::atomic<int> g_failures{0};

namespace {
std::mutex g_print_mutex;
const char* g_current_test = "";
std::atomic<int64_t> g_test_started_ns{0};
constexpr int64_t kTestTimeoutNs = int64_t{60} * 1'000'000'000;  // watchdog: a hung test
}  // namespace

void report_failure(const char* file, int line, const std::string& message) {
  g_failures.fetch_add(1);
  std::lock_guard<std::mutex> lock(g_print_mutex);
  const char* base = std::strrchr(file, '/');
  std::printf("    FAIL %s:%d: %s\n", base ? base + 1 : file, line, message.c_str());
  std::fflush(stdout);
}

int device_count() {
  int n = 0;
  if (srGetDeviceCount(&n) != srSuccess) return 0;
  return n;
}

size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t total_pages = 0, resident_pages = 0;
  f >> total_pages >> resident_pages;
  return resident_pages * static_cast<size_t>(sysconf(_SC_PAGE_SIZE));
}

int run_child(const char* name, const std::vector<std::pair<const char*, const char*>>& env, int timeout_ms) {
  // Build argv and envp before forking: the child of a multi-threaded process
  // may only call async-signal-safe functions until it execs.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    bool overridden = false;
    for (const auto& kv : env) {
      const std::string prefix = std::string(kv.first) + "=";
      if (entry.compare(0, prefix.size(), prefix) == 0) overridden = true;
    }
    if (!overridden) env_strings.push_back(entry);
  }
  for (const auto& kv : env) {
    if (kv.second != nullptr) env_strings.push_back(std::string(kv.first) + "=" + kv.second);
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(&s[0]);
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe";
  std::string arg0 = "sunrise_rt_tests";
  std::string arg1 = name;
  char* argv[] = {&arg0[0], &arg1[0], nullptr};

  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execve(exe.c_str(), argv, envp.data());
    _exit(127);
  }
  const int64_t deadline = now_ns() + int64_t{timeout_ms} * 1'000'000;
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return -1;
    if (now_ns() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      std::printf("    child '%s' timed out after %d ms and was killed\n", name, timeout_ms);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  std::printf("    child '%s' died with signal %d\n", name, WIFSIGNALED(status) ? WTERMSIG(status) : -1);
  return -1;
}

namespace {

// Leaves every device as a fresh test expects it: idle, no sticky error, and
// the calling thread on device 0.
void reset_runtime() {
  const int n = device_count();
  for (int d = 0; d < n; ++d) {
    if (srSetDevice(d) != srSuccess) continue;
    srDeviceSynchronize();
    srGetLastError();
  }
  srSetDevice(0);
}

bool run_one(const TestCase& t) {
  std::printf("[ RUN  ] %s\n", t.name);
  std::fflush(stdout);
  g_failures.store(0);
  g_current_test = t.name;
  const int64_t start = now_ns();
  g_test_started_ns.store(start);
  t.fn();
  reset_runtime();
  g_test_started_ns.store(0);
  const double ms = static_cast<double>(now_ns() - start) / 1e6;
  const bool pass = g_failures.load() == 0;
  std::printf("[ %s ] %s (%.1f ms)\n", pass ? " OK " : "FAIL", t.name, ms);
  std::fflush(stdout);
  return pass;
}

// A test that hangs (a runtime deadlock) must fail the run, not stall it.
void start_watchdog() {
  std::thread([] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const int64_t started = g_test_started_ns.load();
      if (started != 0 && now_ns() - started > kTestTimeoutNs) {
        std::printf("[ FAIL ] %s: watchdog timeout after %lld s (deadlock?)\n", g_current_test,
                    static_cast<long long>(kTestTimeoutNs / 1'000'000'000));
        std::fflush(stdout);
        _exit(1);
      }
    }
  }).detach();
}

}  // namespace
}  // namespace srtest

int main(int argc, char** argv) {
  using namespace srtest;
  auto& tests = registry();
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const auto& t : tests)
      if (!t.hidden) std::printf("%s\n", t.name);
    return 0;
  }
  if (argc == 2 && argv[1][0] != '-') {
    for (const auto& t : tests) {
      if (std::strcmp(t.name, argv[1]) == 0) {
        start_watchdog();
        return run_one(t) ? 0 : 1;
      }
    }
    std::fprintf(stderr, "unknown test '%s' (use --list)\n", argv[1]);
    return 2;
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--list | TEST_NAME]\n", argv[0]);
    return 2;
  }
  // The full run is hermetic: the runtime reads SUNRISE_* once, and tests that
  // need another configuration re-execute this binary with it. Set
  // SRTEST_KEEP_ENV=1 to run everything under the caller's SUNRISE_* instead.
  const char* keep = std::getenv("SRTEST_KEEP_ENV");
  if (keep == nullptr || std::strcmp(keep, "1") != 0) {
    std::vector<std::string> names;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      if (entry.compare(0, 8, "SUNRISE_") == 0) names.push_back(entry.substr(0, entry.find('=')));
    }
    for (const auto& n : names) {
      std::printf("note: ignoring %s for this run (set SRTEST_KEEP_ENV=1 to keep it)\n", n.c_str());
      unsetenv(n.c_str());
    }
  }
  start_watchdog();
  int passed = 0, failed = 0;
  std::vector<const char*> failures;
  for (const auto& t : tests) {
    if (t.hidden) continue;
    if (run_one(t)) {
      ++passed;
    } else {
      ++failed;
      failures.push_back(t.name);
    }
  }
  if (!failures.empty()) {
    std::printf("failed tests:\n");
    for (const char* n : failures) std::printf("  %s\n", n);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
