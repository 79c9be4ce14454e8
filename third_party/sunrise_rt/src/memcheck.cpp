// SUNRISE_MEMCHECK=1: device memory the host cannot touch, and a report like
// a sanitizer's for every stray access.
//
// Device pointers are then addresses in a "device arena" reserved without any
// access: host code that dereferences one faults. Device work reaches the
// bytes through a second arena at a fixed distance (srKernelAddress), where
// each allocation ends against an inaccessible guard page: running past its
// end faults too. A freed range is never handed out again and stays
// inaccessible in both arenas, so a later use faults as well. The fault
// handler names the allocation hit and what went wrong, then aborts.
//
// Granularity: allocations are aligned to 64 bytes at the end of their pages,
// so an overrun into that padding, or an underrun within the first page, goes
// unnoticed, as with most page-based checkers.
#include "internal.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <new>

namespace sunrise_rt {
namespace {

// Address space only (no memory, no commit charge): 1 TiB per arena, or less
// where the address space is restricted (under ThreadSanitizer, say).
constexpr size_t kArenaSizes[] = {size_t{1} << 40, size_t{1} << 36, size_t{1} << 33};
constexpr size_t kAlignment = 64;
constexpr size_t kMaxRecords = size_t{1} << 22;

struct Record {
  uintptr_t base;    // device pointer of the allocation
  size_t size;       // bytes requested
  uintptr_t start;   // first byte of its pages (device arena)
  size_t mapped;     // bytes of its pages, guard page excluded
  int device;
  std::atomic<bool> freed;
};

struct Arenas {
  uintptr_t device = 0;  // the addresses handed out as device pointers
  uintptr_t access = 0;  // where device work reaches them
  size_t bytes = 0;      // of each arena
  size_t next = 0;       // bump offset; address ranges are never reused
  std::mutex mutex;
  // Append-only, in address order, readable from the signal handler without a
  // lock: an entry is complete before `count` covers it.
  Record* records = nullptr;
  std::atomic<size_t> count{0};
  struct sigaction previous_segv {};
  struct sigaction previous_bus {};
};

Arenas& arenas() {
  static auto& a = *std::make_unique<Arenas>().release();
  return a;
}

size_t page() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGE_SIZE));
  return p;
}

void* reserve(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

const Record* find_record(uintptr_t address_in_device_arena) {
  Arenas& a = arenas();
  size_t lo = 0, hi = a.count.load(std::memory_order_acquire);
  while (lo < hi) {  // the last record starting at or before the address
    const size_t mid = (lo + hi) / 2;
    if (a.records[mid].start <= address_in_device_arena) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return nullptr;
  const Record& r = a.records[lo - 1];
  return address_in_device_arena < r.start + r.mapped + page() ? &r : nullptr;  // its pages and guard page
}

// Async-signal-safe enough: snprintf into a static buffer, one write(2).
void report_and_abort(const char* who, bool write, uintptr_t address) {
  static char text[1024];
  const Record* r = find_record(address);
  const char* access = write ? "write to" : "read of";
  int n = 0;
  if (r == nullptr) {
    n = std::snprintf(text, sizeof(text),
                      "==sunrise memcheck== %s: invalid %s device memory at %p, outside any allocation\n", who, access,
                      reinterpret_cast<void*>(address));
  } else {
    const long long offset = static_cast<long long>(address) - static_cast<long long>(r->base);
    if (r->freed.load(std::memory_order_acquire)) {
      n = std::snprintf(text, sizeof(text),
                        "==sunrise memcheck== %s: %s freed device memory (use after free) at %p: byte %lld of a "
                        "%zu-byte allocation of device %d at %p\n",
                        who, access, reinterpret_cast<void*>(address), offset, r->size, r->device,
                        reinterpret_cast<void*>(r->base));
    } else if (offset >= static_cast<long long>(r->size)) {
      n = std::snprintf(text, sizeof(text),
                        "==sunrise memcheck== %s: out-of-bounds %s device memory at %p: %lld bytes after the end of a "
                        "%zu-byte allocation of device %d at %p\n",
                        who, access, reinterpret_cast<void*>(address), offset - static_cast<long long>(r->size),
                        r->size, r->device, reinterpret_cast<void*>(r->base));
    } else {
      n = std::snprintf(text, sizeof(text),
                        "==sunrise memcheck== %s: invalid %s device memory at %p: byte %lld of a live %zu-byte "
                        "allocation of device %d at %p\n",
                        who, access, reinterpret_cast<void*>(address), offset, r->size, r->device,
                        reinterpret_cast<void*>(r->base));
    }
  }
  if (n > 0) {
    ssize_t unused = ::write(2, text, static_cast<size_t>(n) < sizeof(text) ? static_cast<size_t>(n) : sizeof(text) - 1);
    (void)unused;
  }
  static const char hint[] =
      "==sunrise memcheck== device pointers are not host addresses: the host reads and writes device memory "
      "through copies (srMemcpy, tensor.cpu()), device work through srKernelAddress.\n";
  ssize_t unused = ::write(2, hint, sizeof(hint) - 1);
  (void)unused;
  signal(SIGABRT, SIG_DFL);
  abort();
}

void forward(int sig, siginfo_t* info, void* context) {
  const struct sigaction& prev = sig == SIGBUS ? arenas().previous_bus : arenas().previous_segv;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction != nullptr) return prev.sa_sigaction(sig, info, context);
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler != nullptr) {
    return prev.sa_handler(sig);
  }
  // Default action: re-raised when the faulting instruction runs again.
  signal(sig, SIG_DFL);
}

void on_fault(int sig, siginfo_t* info, void* context) {
  Arenas& a = arenas();
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  bool write = false;
#if defined(__x86_64__)
  write = (static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#endif
  if (address - a.device < a.bytes) report_and_abort("host code", write, address);
  // Reported by device pointer, the address the allocation is known by.
  if (address - a.access < a.bytes) {
    const uintptr_t device_address = address - a.access + a.device;
    report_and_abort("device work", write, device_address);
  }
  forward(sig, info, context);
}

bool install() {
  Arenas& a = arenas();
  for (size_t bytes : kArenaSizes) {
    void* device = reserve(bytes);
    void* access = device == nullptr ? nullptr : reserve(bytes);
    if (access != nullptr) {
      a.device = reinterpret_cast<uintptr_t>(device);
      a.access = reinterpret_cast<uintptr_t>(access);
      a.bytes = bytes;
      break;
    }
    if (device != nullptr) munmap(device, bytes);
  }
  void* records = mmap(nullptr, kMaxRecords * sizeof(Record), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a.bytes == 0 || records == MAP_FAILED) return false;
  a.records = static_cast<Record*>(records);
  struct sigaction act {};
  act.sa_sigaction = on_fault;
  act.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&act.sa_mask);
  return sigaction(SIGSEGV, &act, &a.previous_segv) == 0 && sigaction(SIGBUS, &act, &a.previous_bus) == 0;
}

bool installed() {
  static const bool ok = config().memcheck && install();
  return ok;
}

}  // namespace

bool memcheck_enabled() { return config().memcheck; }

void* memcheck_map(int device, size_t size, size_t* mapped) {
  if (!installed()) return nullptr;
  Arenas& a = arenas();
  const size_t pages = (size + kAlignment - 1) / kAlignment * kAlignment;
  const size_t bytes = (pages + page() - 1) / page() * page();
  std::lock_guard<std::mutex> lock(a.mutex);
  const size_t count = a.count.load(std::memory_order_relaxed);
  if (a.next + bytes + page() > a.bytes || count == kMaxRecords) return nullptr;
  const size_t offset = a.next;
  void* p = mmap(reinterpret_cast<void*>(a.access + offset), bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  a.next += bytes + page();  // the guard page stays reserved without access
  const uintptr_t start = a.device + offset;
  const uintptr_t base = start + bytes - pages;  // ends against the guard page
  new (&a.records[count]) Record{base, size, start, bytes, device, {false}};
  a.count.store(count + 1, std::memory_order_release);
  *mapped = bytes;
  return reinterpret_cast<void*>(base);
}

void memcheck_unmap(void* ptr) {
  Arenas& a = arenas();
  const auto address = reinterpret_cast<uintptr_t>(ptr);
  std::lock_guard<std::mutex> lock(a.mutex);
  auto* r = const_cast<Record*>(find_record(address));
  if (r == nullptr || r->base != address) return;
  // Back to a reservation without access: the memory goes, the addresses stay taken.
  mmap(reinterpret_cast<void*>(r->start - a.device + a.access), r->mapped, PROT_NONE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  r->freed.store(true, std::memory_order_release);
}

void* memcheck_access(const void* ptr) {
  if (!memcheck_enabled() || !installed()) return const_cast<void*>(ptr);
  const auto address = reinterpret_cast<uintptr_t>(ptr);
  const Arenas& a = arenas();
  if (address - a.device >= a.bytes) return const_cast<void*>(ptr);
  return reinterpret_cast<void*>(address - a.device + a.access);
}

}  // namespace sunrise_rt

extern "C" void* srKernelAddress(const void* ptr) { return sunrise_rt::memcheck_access(ptr); }
