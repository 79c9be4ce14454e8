// Internal structures of the emulated runtime. Not installed; the C API in
// include/sunrise_rt.h is the only contract with the outside.
#pragma once

#include "sunrise_rt.h"

#include <pthread.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace sunrise_rt {

class ComputePool;
struct Capture;

// Names the calling thread as tools show it (top -H, perf, gdb, /proc; at
// most 15 characters). Threads it starts inherit the name: a device thread's
// OpenMP workers show as its own.
inline void name_this_thread(const std::string& name) { pthread_setname_np(pthread_self(), name.substr(0, 15).c_str()); }

// ------------------------------------------------------------------ config

struct Config {
  int device_count = 2;
  size_t memory_bytes = 0;      // per device
  int compute_units = 1;        // per device, including the stream's own thread
  bool launch_blocking = false;
  int64_t spin_ns = 50'000;     // spin before sleeping, nanoseconds
  int serial_us = 100;          // SUNRISE_SERIAL_US, reported as srDeviceProp::serialWorkUs
  // Launch queue depth per stream: a host that runs further ahead than this
  // waits (sleeping, until half the queue has run), as with CUDA's bounded
  // launch queue. What queued work owns (task objects, and anything a kernel
  // keeps alive until it runs) stays bounded with it.
  long max_queued = 256;
  bool memcheck = false;        // SUNRISE_MEMCHECK=1 (memcheck.cpp)
  std::string error;            // non-empty: the environment was invalid
};

const Config& config();

// Parses "16GiB", "512MiB", "1.5GB", "4096" (bytes). Returns false on junk.
bool parse_byte_size(const std::string& text, size_t* out);

// ------------------------------------------------------------------ errors

// Records `detail` as the calling thread's last error detail and returns err.
srError_t fail(srError_t err, std::string detail);
// Success also clears the thread's detail so that stale text never leaks into
// an unrelated message.
srError_t ok();

// ------------------------------------------------------------------ timing

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins up to spin_ns on `done`, then returns its last value. Keeps short
// waits off the scheduler: a futex sleep+wake costs more than most small ops.
template <typename Pred>
bool spin_until(Pred done, int64_t spin_ns) {
  if (done()) return true;
  const int64_t deadline = now_ns() + spin_ns;
  for (unsigned i = 1;; ++i) {
    cpu_relax();
    if (done()) return true;
    if ((i & 63u) == 0 && now_ns() > deadline) return false;
  }
}

// ----------------------------------------------------------------- devices

struct Device {
  int index = 0;
  srDeviceProp prop{};
  size_t capacity = 0;
  std::atomic<size_t> used{0};  // bytes mapped for srMalloc on this device

  // Sticky error from asynchronous work; guarded by error_mutex.
  std::mutex error_mutex;
  std::atomic<int> sticky_error{srSuccess};
  std::string sticky_detail;

  srStream* default_stream = nullptr;

  // Lock order: streams_mutex is never held while taking a stream's mutex
  // for submission, so synchronize-all cannot deadlock against submitters.
  std::mutex streams_mutex;
  std::vector<srStream*> live_streams;

  std::once_flag pool_once;
  std::unique_ptr<ComputePool> pool;
  ComputePool& compute_pool();

  void set_sticky(srError_t err, const std::string& detail);
  srError_t sticky() const { return static_cast<srError_t>(sticky_error.load(std::memory_order_acquire)); }
  // Returns the sticky error with its detail recorded for the calling thread.
  srError_t report_sticky();
};

// Validates the index and returns the device, starting the runtime on first use.
srError_t get_device(int index, Device** out);
srError_t current_device(Device** out);
int device_count_unchecked();
// Waits for every live stream of the device.
srError_t synchronize_device(Device& dev);

// ------------------------------------------------------------------ memory

struct AllocationInfo {
  uintptr_t base = 0;
  size_t size = 0;    // bytes requested: the bounds of valid access
  size_t mapped = 0;  // bytes mapped (whole pages): what is released
  srMemoryType type = srMemoryTypeUnregistered;
  int device = -1;
};

// Finds the live allocation containing ptr; false for ordinary host memory.
bool find_allocation(const void* ptr, AllocationInfo* out);

// Executes a copy on the calling (device) thread, splitting large copies over
// the device's compute units.
void execute_copy(Device* dev, void* dst, const void* src, size_t count);
void execute_set(Device* dev, void* dst, int value, size_t count);

// ---------------------------------------------------------------- memcheck

// SUNRISE_MEMCHECK=1 (memcheck.cpp). memcheck_map returns the device pointer
// of `size` new bytes (nullptr when the arena is exhausted) and the bytes
// mapped for them; memcheck_unmap releases them for good; memcheck_access
// turns a device pointer into the address device work uses (identity for
// anything else, and when memcheck is off).
bool memcheck_enabled();
void* memcheck_map(int device, size_t size, size_t* mapped);
void memcheck_unmap(void* ptr);
void* memcheck_access(const void* ptr);

// ---------------------------------------------------------------- activity

// The host side of a launch made while activity tracing was on.
struct LaunchTrace {
  unsigned long long correlation = 0;
  int64_t start_ns = 0, end_ns = 0;  // system clock
  uint64_t thread = 0;
};

struct Task;
extern std::atomic<bool> g_activity_enabled;
inline bool activity_enabled() { return g_activity_enabled.load(std::memory_order_relaxed); }
// Fills the launch's trace (submit, while tracing); `end` once it is queued.
void begin_launch_trace(LaunchTrace& trace);
void end_launch_trace(LaunchTrace& trace);
// Records a traced task that ran from start_ns until now (device thread).
void record_task(srStream* stream, const Task& task, int64_t start_ns);
// While a traced graph launch runs on this thread: its nodes are recorded.
struct GraphNodeTracer {
  srStream* stream;
  const LaunchTrace* launch;
  void record(int kind, int64_t start_ns, srDim3 grid, size_t bytes, int copy_kind) const;
};
extern thread_local const GraphNodeTracer* t_graph_tracer;
int64_t wall_now_ns();

// ----------------------------------------------------------------- streams

// Executed by the stream's device thread. Kept as a tagged struct rather than a
// std::function so that submission does not allocate for the common cases.
struct Task {
  enum class Kind : uint8_t { Kernel, HostFn, Copy, Set, EventRecord, WaitStream, Graph };
  Kind kind = Kind::HostFn;
  bool traced = false;  // launched while activity tracing was on (activity.cpp)
  uint64_t seq = 0;

  // What every kind uses comes first: a host function's task, the common
  // case, then fills one cache line of its slot, not the kernel arguments'.
  srHostFn_t host_fn = nullptr;
  void* user_data = nullptr;
  LaunchTrace trace;  // read only when traced

  srKernel_t kernel = nullptr;
  srDim3 grid{1, 1, 1};
  srDim3 block{1, 1, 1};
  std::unique_ptr<unsigned char[]> heap_args;
  size_t args_size = 0;

  void* dst = nullptr;
  const void* src = nullptr;
  size_t count = 0;
  int value = 0;

  srEvent* event = nullptr;
  uint64_t event_generation = 0;

  srStream* wait_stream = nullptr;
  uint64_t wait_seq = 0;

  srGraphExec* graph_exec = nullptr;

  static constexpr size_t kInlineArgs = 128;
  alignas(16) unsigned char inline_args[kInlineArgs];

  void* args() { return heap_args ? heap_args.get() : inline_args; }

  Task() = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // Moves `other` into this task, which is a queue slot, writing only the
  // fields its kind uses: a slot's lines move between the host and the device
  // thread, and a host function's task then touches just the first one. The
  // other fields keep stale values that nothing of this kind reads.
  void take(Task&& other) noexcept {
    kind = other.kind;
    seq = other.seq;
    traced = other.traced;
    if (traced) trace = other.trace;
    switch (kind) {
      case Kind::HostFn:
        host_fn = other.host_fn;
        user_data = other.user_data;
        break;
      case Kind::Kernel:
        kernel = other.kernel;
        grid = other.grid;
        block = other.block;
        heap_args = std::move(other.heap_args);
        args_size = other.args_size;
        if (!heap_args && args_size > 0) std::memcpy(inline_args, other.inline_args, args_size);
        break;
      case Kind::Copy:
      case Kind::Set:
        dst = other.dst;
        src = other.src;
        count = other.count;
        value = other.value;
        break;
      case Kind::EventRecord:
        event = other.event;
        event_generation = other.event_generation;
        break;
      case Kind::WaitStream:
        wait_stream = other.wait_stream;
        wait_seq = other.wait_seq;
        break;
      case Kind::Graph:
        graph_exec = other.graph_exec;
        break;
    }
  }
};

// A slot holds a task from the moment `published` equals the task's sequence
// number (set by the submitting host thread after writing the task). The
// device thread knows which number comes next, so it only reads slots and
// never writes them back (which would move each slot's line to it and back):
// a slot is free again once its whole segment has been handed back.
struct alignas(64) TaskSlot {
  std::atomic<uint64_t> published{0};
  Task task;
};

// A fixed run of slots. The host links the next segment before it publishes
// the last slot, so the device thread, having run that slot, always finds it.
struct TaskSegment {
  static constexpr size_t kSlots = 128;
  TaskSlot slots[kSlots];
  std::atomic<TaskSegment*> next{nullptr};
  TaskSegment* next_spare = nullptr;  // in a list of segments to reuse
};

}  // namespace sunrise_rt

// The opaque handle types of the C API.
struct srStream {
  static constexpr uint32_t kLive = 0x5354524du;  // "STRM"
  std::atomic<uint32_t> magic{kLive};
  sunrise_rt::Device* device = nullptr;
  int priority = 0;
  unsigned flags = 0;
  bool is_default = false;

  // `submitted` and `completed` count tasks; the stream is idle exactly when
  // they are equal, which, unlike "the queue is empty", also covers a task
  // that has been dequeued and is still running.
  //
  // The queue is a chain of segments of slots. Host threads append under
  // submit_mutex; the device thread takes tasks without any lock, watching
  // the next slot's sequence number. The fields are grouped by the thread that
  // writes them, a cache line each: a line that both sides write moves
  // between cores on every launch (the lock the device thread used to take
  // per batch cost the host a transfer on every launch).
  alignas(64) std::mutex submit_mutex;
  sunrise_rt::TaskSegment* tail_segment = nullptr;  // guarded by submit_mutex
  size_t tail_index = 0;                            // next free slot of tail_segment
  sunrise_rt::TaskSegment* spare_segments = nullptr;  // guarded by submit_mutex
  std::vector<std::unique_ptr<sunrise_rt::TaskSegment>> segments;  // all of them; guarded by submit_mutex
  bool stopping = false;                            // guarded by submit_mutex
  // The capture this stream takes part in (graph.cpp); guarded by submit_mutex,
  // so that submission, which holds the lock anyway, checks it for free.
  std::shared_ptr<sunrise_rt::Capture> capture;
  std::thread worker;
  std::atomic<uint64_t> submitted{0};
  // A recent value of `completed`, so that the launch-queue bound reads the
  // device thread's line only when the bound may have been reached.
  std::atomic<uint64_t> completed_seen{0};

  // Device thread only.
  alignas(64) sunrise_rt::TaskSegment* head_segment = nullptr;
  size_t head_index = 0;
  uint64_t head_seq = 1;  // the sequence number of the next task to run
  // Busy time (srDeviceGetBusyTime): written by the device thread when it
  // starts or stops running work, read by others under the sequence count.
  std::atomic<uint32_t> busy_seq{0};
  std::atomic<int64_t> busy_ns{0};     // runs that ended
  std::atomic<int64_t> busy_since{0};  // start of the current run; 0 while waiting for work

  // Segments the device thread finished, for the host to reuse.
  alignas(64) std::atomic<sunrise_rt::TaskSegment*> returned_segments{nullptr};

  // The device thread sleeping, and its wake-up; written only when it goes
  // to sleep or wakes, so the host reads the flag from its own cache.
  alignas(64) std::atomic<bool> worker_sleeping{false};
  std::atomic<bool> stop_requested{false};
  std::mutex sleep_mutex;
  std::condition_variable sleep_cv;

  alignas(64) std::atomic<uint64_t> completed{0};
  std::atomic<int> waiters{0};
  // The lowest sequence number a blocked waiter needs: the device thread
  // wakes waiters when it gets there, not after every task.
  std::atomic<uint64_t> wake_at{UINT64_MAX};

  // Completion side: host threads block here after spinning.
  alignas(64) std::mutex done_mutex;
  std::condition_variable done_cv;

  bool valid() const { return magic.load(std::memory_order_acquire) == kLive; }
};

struct srEvent {
  static constexpr uint32_t kLive = 0x45564e54u;  // "EVNT"
  std::atomic<uint32_t> magic{kLive};
  unsigned flags = 0;

  // The recorded point: complete when stream->completed >= seq. Guarded by
  // mutex for writers; readers take the lock too (records are rare).
  std::mutex mutex;
  srStream* stream = nullptr;
  uint64_t seq = 0;
  uint64_t generation = 0;         // of the committed record
  uint64_t issued_generation = 0;  // last one handed out (commits may fail)
  bool recorded = false;
  std::atomic<int64_t> timestamp_ns{0};
  std::atomic<uint64_t> timestamp_generation{0};
  // Recorded on a capturing stream: the capture and its nodes the record
  // stands for (then `recorded` is false). Guarded by mutex.
  unsigned long long capture_id = 0;
  std::vector<uint32_t> capture_nodes;

  bool valid() const { return magic.load(std::memory_order_acquire) == kLive; }
  bool timing() const { return (flags & srEventDisableTiming) == 0; }
};

namespace sunrise_rt {

// Handles are validated against every object the runtime ever created (their
// memory is never returned), so a garbage pointer is rejected, not read. A
// few recently validated handles are cached per thread: the hot path is a
// pointer compare.
template <typename T>
class HandleRegistry {
 public:
  void add(const T* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    known_.insert(p);
  }
  bool contains(const T* p) {
    thread_local const T* cache[4] = {nullptr, nullptr, nullptr, nullptr};
    thread_local unsigned next = 0;
    for (const T* c : cache)
      if (c == p) return true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (known_.count(p) == 0) return false;
    }
    cache[next++ & 3u] = p;
    return true;
  }

 private:
  std::mutex mutex_;
  std::unordered_set<const T*> known_;
};

// Runs device work on the calling device thread; false when it reported an
// error (already made the device's sticky error).
bool run_kernel(Device* dev, srKernel_t kernel, srDim3 grid, srDim3 block, void* args);
bool run_host_fn(Device* dev, srHostFn_t fn, void* user_data);

// ------------------------------------------------------------------ capture

// graph.cpp. record_captured appends a task submitted to a capturing stream
// (called by submit with the stream's submit_mutex held); false when the
// capture has ended meanwhile and the task is to run as usual.
bool record_captured(srStream* stream, Task& task, srError_t* result);
// A stream's active capture, or null.
std::shared_ptr<Capture> capture_of(srStream* stream);
// srSuccess, or srErrorStreamCaptureUnsupported (invalidating the captures
// concerned) when the calling thread may not make potentially unsafe calls.
srError_t check_unsafe_call(const char* call);
// Fails (invalidating the capture) when `stream` captures: it cannot be waited for.
srError_t check_not_capturing(srStream* stream, const char* call);
// For srEventRecord / srStreamWaitEvent on capturing streams; `handled` is
// false when the call is not about a capture and proceeds as usual.
srError_t record_event_in_capture(srEvent* event, srStream* stream, bool* handled);
srError_t wait_event_in_capture(srStream* stream, srEvent* event, bool* handled);
// srErrorCapturedEvent when the event was last recorded in an active capture.
srError_t check_event_not_captured(srEvent* event, const char* call);
void execute_graph(Device* dev, srGraphExec* exec);

srError_t check_stream(srStream_t stream);
srError_t check_event(srEvent_t event);
// Enqueues the task and returns its sequence number (0 when it failed).
srError_t submit(srStream* stream, Task&& task, uint64_t* seq_out = nullptr);
srError_t synchronize_stream(srStream* stream);
// Blocks until stream->completed >= seq (spins first).
void wait_for(srStream* stream, uint64_t seq, bool allow_spin = true);
srError_t create_stream(Device* dev, int priority, unsigned flags, bool is_default, srStream** out);
void execute_event_record(Task& task);

}  // namespace sunrise_rt
