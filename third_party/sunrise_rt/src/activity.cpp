// Activity tracing: the device's timeline for a profiler (sunrise_rt.h).
//
// A launch made while tracing is on carries its correlation id and host
// timestamps in its task; the device thread that runs it appends a record.
// Records go to one list under a lock: tracing is for profiling runs, where
// a lock per task costs far less than the tasks it times.
#include "internal.h"

#include <sys/syscall.h>
#include <unistd.h>

namespace sunrise_rt {

std::atomic<bool> g_activity_enabled{false};
thread_local const GraphNodeTracer* t_graph_tracer = nullptr;

namespace {

// Each id is pushed with the recording session it belongs to: a session that
// ended while an id was pushed (a profiler stopped mid-op) leaves it on some
// thread's stack, and later launches must not carry it.
struct PushedId {
  unsigned long long id;
  uint64_t session;
};
thread_local std::vector<PushedId> t_correlation_ids;
thread_local uint64_t t_thread_id = 0;
std::atomic<uint64_t> g_session{0};

std::mutex g_records_mutex;
std::vector<srActivityRecord>& records() {
  static auto& r = *std::make_unique<std::vector<srActivityRecord>>().release();
  return r;
}

uint64_t this_thread_id() {
  if (t_thread_id == 0) t_thread_id = static_cast<uint64_t>(::syscall(SYS_gettid));
  return t_thread_id;
}

srActivityRecord make_record(srStream* stream, const LaunchTrace& launch, srActivityKind kind, int64_t start_ns) {
  srActivityRecord r{};
  r.kind = kind;
  r.device = stream->device->index;
  r.stream = stream;
  r.correlationId = launch.correlation;
  r.startNs = start_ns;
  r.endNs = wall_now_ns();
  r.launchStartNs = launch.start_ns;
  r.launchEndNs = launch.end_ns;
  r.launchThread = launch.thread;
  r.copyKind = srMemcpyDefault;
  return r;
}

void append(const srActivityRecord& r) {
  std::lock_guard<std::mutex> lock(g_records_mutex);
  records().push_back(r);
}

}  // namespace

int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void begin_launch_trace(LaunchTrace& trace) {
  const uint64_t session = g_session.load(std::memory_order_relaxed);
  trace.correlation = 0;
  for (auto it = t_correlation_ids.rbegin(); it != t_correlation_ids.rend(); ++it) {
    if (it->session == session) {
      trace.correlation = it->id;
      break;
    }
  }
  trace.thread = this_thread_id();
  trace.start_ns = wall_now_ns();
}

void end_launch_trace(LaunchTrace& trace) { trace.end_ns = wall_now_ns(); }

void record_task(srStream* stream, const Task& task, int64_t start_ns) {
  srActivityRecord r;
  switch (task.kind) {
    case Task::Kind::Kernel:
      r = make_record(stream, task.trace, srActivityKindKernel, start_ns);
      r.grid = task.grid;
      break;
    case Task::Kind::HostFn:
      r = make_record(stream, task.trace, srActivityKindHostFunc, start_ns);
      break;
    case Task::Kind::Copy:
      r = make_record(stream, task.trace, srActivityKindMemcpy, start_ns);
      r.bytes = task.count;
      r.copyKind = static_cast<srMemcpyKind>(task.value);
      break;
    case Task::Kind::Set:
      r = make_record(stream, task.trace, srActivityKindMemset, start_ns);
      r.bytes = task.count;
      break;
    default:
      return;  // event records and waits are ordering, not work
  }
  append(r);
}

void GraphNodeTracer::record(int kind, int64_t start_ns, srDim3 grid, size_t bytes, int copy_kind) const {
  srActivityRecord r = make_record(stream, *launch, static_cast<srActivityKind>(kind), start_ns);
  r.inGraph = 1;
  r.grid = grid;
  r.bytes = bytes;
  r.copyKind = static_cast<srMemcpyKind>(copy_kind);
  append(r);
}

}  // namespace sunrise_rt

using namespace sunrise_rt;

extern "C" {

srError_t srActivityEnable(int enable) {
  if (enable != 0) g_session.fetch_add(1, std::memory_order_relaxed);
  g_activity_enabled.store(enable != 0, std::memory_order_seq_cst);
  return ok();
}

srError_t srActivityPushExternalCorrelationId(unsigned long long id) {
  t_correlation_ids.push_back(PushedId{id, g_session.load(std::memory_order_relaxed)});
  return ok();
}

srError_t srActivityPopExternalCorrelationId(unsigned long long* id) {
  if (t_correlation_ids.empty()) {
    return fail(srErrorInvalidValue, "srActivityPopExternalCorrelationId: this thread pushed no id");
  }
  if (id != nullptr) *id = t_correlation_ids.back().id;
  t_correlation_ids.pop_back();
  return ok();
}

srError_t srActivityFlush(srActivityCallback_t callback, void* user_data) {
  if (callback == nullptr) return fail(srErrorInvalidValue, "srActivityFlush: callback is NULL");
  std::vector<srActivityRecord> taken;
  {
    std::lock_guard<std::mutex> lock(g_records_mutex);
    taken.swap(records());
  }
  if (!taken.empty()) callback(taken.data(), taken.size(), user_data);
  return ok();
}

}  // extern "C"
