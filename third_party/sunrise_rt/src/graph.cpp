// Stream capture, graphs and executable graphs.
//
// A capture is shared by the streams taking part in it: the origin stream,
// and every stream that waited on an event recorded inside it. Each of them
// has a frontier, the nodes its next submission depends on. Nodes are kept
// in the order they were captured, which is a topological order: a node only
// ever depends on nodes captured before it. An executable graph runs its nodes
// in that order on the launching stream's device thread, as one task.
#include "compute_pool.h"
#include "internal.h"

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <map>
#include <unordered_map>

namespace sunrise_rt {

struct GraphNode {
  Task::Kind kind = Task::Kind::HostFn;
  srHostFn_t host_fn = nullptr;
  void* user_data = nullptr;
  srKernel_t kernel = nullptr;
  srDim3 grid{1, 1, 1};
  srDim3 block{1, 1, 1};
  std::vector<std::max_align_t> args;  // kernel argument bytes, suitably aligned
  void* dst = nullptr;
  const void* src = nullptr;
  size_t count = 0;
  int value = 0;
  std::vector<uint32_t> deps;
};

struct Capture {
  unsigned long long id = 0;
  srStreamCaptureMode mode = srStreamCaptureModeGlobal;
  std::thread::id thread;
  srStream* origin = nullptr;

  // Set under `mutex`; read also under a stream's submit_mutex.
  std::atomic<bool> ended{false};
  std::mutex mutex;  // guards what follows
  bool invalidated = false;
  std::string invalid_reason;
  std::vector<GraphNode> nodes;
  std::vector<srStream*> streams;  // origin first
  std::unordered_map<srStream*, std::vector<uint32_t>> frontier;
};

}  // namespace sunrise_rt

struct srGraph {
  static constexpr uint32_t kLive = 0x47525048u;  // "GRPH"
  std::atomic<uint32_t> magic{kLive};
  int device = 0;
  std::vector<sunrise_rt::GraphNode> nodes;
  bool valid() const { return magic.load(std::memory_order_acquire) == kLive; }
};

struct srGraphExec {
  static constexpr uint32_t kLive = 0x47455845u;  // "GEXE"
  std::atomic<uint32_t> magic{kLive};
  int device = 0;
  std::vector<sunrise_rt::GraphNode> nodes;
  // The last launch, which the next one is ordered after.
  std::mutex launch_mutex;
  srStream* last_stream = nullptr;
  uint64_t last_seq = 0;
  bool valid() const { return magic.load(std::memory_order_acquire) == kLive; }
};

namespace sunrise_rt {
namespace {

// Graph objects are never freed (their nodes are): a destroyed handle stays
// readable and reports srErrorInvalidResourceHandle, as streams do.
template <typename T>
struct Graveyard {
  std::mutex mutex;
  std::vector<std::unique_ptr<T>> objects;
  HandleRegistry<T> registry;

  T* make() {
    auto object = std::make_unique<T>();
    T* raw = object.get();
    {
      std::lock_guard<std::mutex> lock(mutex);
      objects.push_back(std::move(object));
    }
    registry.add(raw);
    return raw;
  }
};

Graveyard<srGraph>& graphs() {
  static auto& g = *std::make_unique<Graveyard<srGraph>>().release();
  return g;
}

Graveyard<srGraphExec>& execs() {
  static auto& g = *std::make_unique<Graveyard<srGraphExec>>().release();
  return g;
}

// Every active capture, by id. g_active mirrors its size for the fast path of
// check_unsafe_call.
std::mutex g_captures_mutex;
std::map<unsigned long long, std::shared_ptr<Capture>>& captures() {
  static auto& m = *std::make_unique<std::map<unsigned long long, std::shared_ptr<Capture>>>().release();
  return m;
}
std::atomic<int> g_active{0};
std::atomic<unsigned long long> g_next_capture_id{1};

thread_local srStreamCaptureMode t_mode = srStreamCaptureModeGlobal;

const char* mode_name(srStreamCaptureMode mode) {
  switch (mode) {
    case srStreamCaptureModeGlobal: return "global";
    case srStreamCaptureModeThreadLocal: return "thread-local";
    case srStreamCaptureModeRelaxed: return "relaxed";
  }
  return "unknown";
}

std::string describe(const Capture& cap) {
  return "capture " + std::to_string(cap.id) + " (" + mode_name(cap.mode) + " mode, begun by " +
         (cap.thread == std::this_thread::get_id() ? "this thread" : "another thread") + ")";
}

void invalidate(Capture& cap, const std::string& reason) {
  std::lock_guard<std::mutex> lock(cap.mutex);
  if (!cap.invalidated) {
    cap.invalidated = true;
    cap.invalid_reason = reason;
  }
}

std::shared_ptr<Capture> find_capture(unsigned long long id) {
  std::lock_guard<std::mutex> lock(g_captures_mutex);
  auto it = captures().find(id);
  return it == captures().end() ? nullptr : it->second;
}

GraphNode node_of(Task& task) {
  GraphNode node;
  node.kind = task.kind;
  switch (task.kind) {
    case Task::Kind::HostFn:
      node.host_fn = task.host_fn;
      node.user_data = task.user_data;
      break;
    case Task::Kind::Kernel:
      node.kernel = task.kernel;
      node.grid = task.grid;
      node.block = task.block;
      node.args.resize((task.args_size + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
      if (task.args_size > 0) std::memcpy(node.args.data(), task.args(), task.args_size);
      break;
    case Task::Kind::Copy:
    case Task::Kind::Set:
      node.dst = task.dst;
      node.src = task.src;
      node.count = task.count;
      node.value = task.value;
      break;
    default:
      break;  // record_captured refuses the others
  }
  return node;
}

const char* kind_name(Task::Kind kind) {
  switch (kind) {
    case Task::Kind::Kernel: return "kernel";
    case Task::Kind::HostFn: return "host function";
    case Task::Kind::Copy: return "copy";
    case Task::Kind::Set: return "memset";
    default: return "other";
  }
}

// Ends the capture for every stream in it and forgets it; returns what was
// captured. The stream locks are taken after the capture's lock is released:
// submission takes them in the other order.
void finish(const std::shared_ptr<Capture>& cap) {
  std::vector<srStream*> streams;
  {
    std::lock_guard<std::mutex> lock(cap->mutex);
    cap->ended = true;
    streams = cap->streams;
  }
  for (srStream* s : streams) {
    std::lock_guard<std::mutex> lock(s->submit_mutex);
    if (s->capture == cap) s->capture.reset();
  }
  std::lock_guard<std::mutex> lock(g_captures_mutex);
  if (captures().erase(cap->id) > 0) g_active.fetch_sub(1, std::memory_order_acq_rel);
}

srError_t check_graph(srGraph_t graph) {
  if (graph == nullptr) return fail(srErrorInvalidResourceHandle, "graph handle is NULL");
  if (!graphs().registry.contains(graph)) return fail(srErrorInvalidResourceHandle, "graph handle was not created by this runtime");
  if (!graph->valid()) return fail(srErrorInvalidResourceHandle, "graph handle was destroyed");
  return srSuccess;
}

srError_t check_exec(srGraphExec_t exec) {
  if (exec == nullptr) return fail(srErrorInvalidResourceHandle, "executable graph handle is NULL");
  if (!execs().registry.contains(exec))
    return fail(srErrorInvalidResourceHandle, "executable graph handle was not created by this runtime");
  if (!exec->valid()) return fail(srErrorInvalidResourceHandle, "executable graph handle was destroyed");
  return srSuccess;
}

}  // namespace

bool record_captured(srStream* s, Task& task, srError_t* result) {
  Capture& cap = *s->capture;
  std::lock_guard<std::mutex> lock(cap.mutex);
  if (cap.ended) return false;
  if (cap.invalidated) {
    *result = fail(srErrorStreamCaptureInvalidated, "the stream's capture " + std::to_string(cap.id) +
                                                        " was invalidated: " + cap.invalid_reason);
    return true;
  }
  if (task.kind != Task::Kind::Kernel && task.kind != Task::Kind::HostFn && task.kind != Task::Kind::Copy &&
      task.kind != Task::Kind::Set) {
    // An event record, a wait or a graph launch decided before the capture
    // began on this stream (by another thread): it cannot be a node.
    cap.invalidated = true;
    cap.invalid_reason = "work submitted while the capture began could not be recorded";
    *result = fail(srErrorStreamCaptureInvalidated, "the capture began on the stream while this call was submitting "
                                                    "to it; capture " + std::to_string(cap.id) + " is invalidated");
    return true;
  }
  GraphNode node = node_of(task);
  auto& frontier = cap.frontier[s];
  node.deps = frontier;
  frontier.assign(1, static_cast<uint32_t>(cap.nodes.size()));
  cap.nodes.push_back(std::move(node));
  *result = ok();
  return true;
}

std::shared_ptr<Capture> capture_of(srStream* s) {
  // Stream syncs and event records ask on every call: no lock while no
  // capture exists (a stream's capture is counted before it is set).
  if (g_active.load(std::memory_order_acquire) == 0) return nullptr;
  std::lock_guard<std::mutex> lock(s->submit_mutex);
  if (s->capture && !s->capture->ended) return s->capture;
  return nullptr;
}

srError_t check_unsafe_call(const char* call) {
  if (g_active.load(std::memory_order_acquire) == 0 || t_mode == srStreamCaptureModeRelaxed) return srSuccess;
  std::vector<std::shared_ptr<Capture>> culprits;
  {
    std::lock_guard<std::mutex> lock(g_captures_mutex);
    const auto me = std::this_thread::get_id();
    for (auto& [id, cap] : captures()) {
      const bool own = cap->thread == me;
      if ((own && cap->mode != srStreamCaptureModeRelaxed) ||
          (!own && t_mode == srStreamCaptureModeGlobal && cap->mode == srStreamCaptureModeGlobal)) {
        culprits.push_back(cap);
      }
    }
  }
  if (culprits.empty()) return srSuccess;
  const std::string reason = std::string(call) + " was called during the capture";
  for (auto& cap : culprits) invalidate(*cap, reason);
  return fail(srErrorStreamCaptureUnsupported,
              std::string(call) + " waits for the device, which is not permitted while a stream captures (" +
                  describe(*culprits.front()) + "); the capture is invalidated");
}

srError_t check_not_capturing(srStream* s, const char* call) {
  std::shared_ptr<Capture> cap = capture_of(s);
  if (!cap) return srSuccess;
  invalidate(*cap, std::string(call) + " was called on a capturing stream");
  return fail(srErrorStreamCaptureUnsupported, std::string(call) +
                                                   " is not permitted on a stream that captures: its work is recorded, "
                                                   "not run (" + describe(*cap) + "); the capture is invalidated");
}

srError_t record_event_in_capture(srEvent* event, srStream* s, bool* handled) {
  *handled = false;
  std::shared_ptr<Capture> cap = capture_of(s);
  if (!cap) return srSuccess;
  *handled = true;
  std::vector<uint32_t> nodes;
  {
    std::lock_guard<std::mutex> lock(cap->mutex);
    if (cap->ended) {  // ended meanwhile: an ordinary record
      *handled = false;
      return srSuccess;
    }
    if (cap->invalidated)
      return fail(srErrorStreamCaptureInvalidated,
                  "the stream's capture " + std::to_string(cap->id) + " was invalidated: " + cap->invalid_reason);
    nodes = cap->frontier[s];
  }
  std::lock_guard<std::mutex> lock(event->mutex);
  event->recorded = false;
  event->capture_id = cap->id;
  event->capture_nodes = std::move(nodes);
  return ok();
}

srError_t wait_event_in_capture(srStream* s, srEvent* event, bool* handled) {
  *handled = false;
  if (g_active.load(std::memory_order_acquire) == 0) return srSuccess;  // eager on both sides
  unsigned long long event_capture = 0;
  std::vector<uint32_t> nodes;
  srStream* recorded_on = nullptr;
  uint64_t recorded_seq = 0;
  bool recorded = false;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    event_capture = event->capture_id;
    nodes = event->capture_nodes;
    recorded_on = event->stream;
    recorded_seq = event->seq;
    recorded = event->recorded;
  }
  std::shared_ptr<Capture> from = event_capture ? find_capture(event_capture) : nullptr;
  std::shared_ptr<Capture> cap = capture_of(s);
  if (!from && !cap) return srSuccess;  // eager on both sides
  *handled = true;
  if (!from) {
    // A capturing stream waiting on eager work: the graph could not replay
    // that dependency. Work already done is no dependency at all.
    if (!recorded || recorded_on->completed.load(std::memory_order_seq_cst) >= recorded_seq) return ok();
    invalidate(*cap, "a captured stream waited on an event recorded outside the capture");
    return fail(srErrorStreamCaptureIsolation,
                "srStreamWaitEvent: a capturing stream cannot wait on an event recorded outside its capture "
                "while that work is pending (" + describe(*cap) + "); the capture is invalidated");
  }
  if (cap && cap != from) {
    invalidate(*cap, "a captured stream waited on an event of another capture");
    invalidate(*from, "a stream of another capture waited on one of its events");
    return fail(srErrorStreamCaptureIsolation, "srStreamWaitEvent: the event was recorded in capture " +
                                                   std::to_string(from->id) + " but the stream captures into " +
                                                   std::to_string(cap->id) + "; both captures are invalidated");
  }
  // Join: the stream's next work depends on the recorded nodes as well. The
  // stream's lock comes first, as in submission.
  std::lock_guard<std::mutex> stream_lock(s->submit_mutex);
  std::lock_guard<std::mutex> lock(from->mutex);
  if (from->ended) return ok();
  if (from->invalidated)
    return fail(srErrorStreamCaptureInvalidated,
                "the event's capture " + std::to_string(from->id) + " was invalidated: " + from->invalid_reason);
  if (!s->capture) {
    if (s->device != from->origin->device) {
      from->invalidated = true;
      from->invalid_reason = "a stream of another device joined the capture";
      return fail(srErrorNotSupported, "srStreamWaitEvent: a stream of device " + std::to_string(s->device->index) +
                                           " cannot join a capture on device " +
                                           std::to_string(from->origin->device->index) +
                                           "; the capture is invalidated");
    }
    s->capture = from;
    from->streams.push_back(s);
    from->frontier[s] = nodes;
    return ok();
  }
  auto& frontier = from->frontier[s];
  for (uint32_t n : nodes)
    if (std::find(frontier.begin(), frontier.end(), n) == frontier.end()) frontier.push_back(n);
  return ok();
}

srError_t check_event_not_captured(srEvent* event, const char* call) {
  if (g_active.load(std::memory_order_acquire) == 0) return srSuccess;
  unsigned long long id = 0;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    id = event->capture_id;
  }
  if (id == 0 || !find_capture(id)) return srSuccess;
  return fail(srErrorCapturedEvent, std::string(call) + ": the event was recorded in capture " + std::to_string(id) +
                                        ", which is still underway; it completes only when a graph launch runs");
}

namespace {

void trace_node(const GraphNodeTracer& tracer, const GraphNode& node, int64_t start_ns) {
  switch (node.kind) {
    case Task::Kind::Kernel:
      tracer.record(srActivityKindKernel, start_ns, node.grid, 0, srMemcpyDefault);
      break;
    case Task::Kind::HostFn:
      tracer.record(srActivityKindHostFunc, start_ns, srDim3{1, 1, 1}, 0, srMemcpyDefault);
      break;
    case Task::Kind::Copy:
      tracer.record(srActivityKindMemcpy, start_ns, srDim3{1, 1, 1}, node.count, node.value);
      break;
    case Task::Kind::Set:
      tracer.record(srActivityKindMemset, start_ns, srDim3{1, 1, 1}, node.count, srMemcpyDefault);
      break;
    default:
      break;
  }
}

}  // namespace

void execute_graph(Device* dev, srGraphExec* exec) {
  const GraphNodeTracer* tracer = t_graph_tracer;
  for (GraphNode& node : exec->nodes) {
    bool ok = true;
    const int64_t start_ns = tracer ? wall_now_ns() : 0;
    switch (node.kind) {
      case Task::Kind::Kernel:
        ok = run_kernel(dev, node.kernel, node.grid, node.block, node.args.data());
        break;
      case Task::Kind::HostFn:
        ok = run_host_fn(dev, node.host_fn, node.user_data);
        break;
      case Task::Kind::Copy:
        execute_copy(dev, node.dst, node.src, node.count);
        break;
      case Task::Kind::Set:
        execute_set(dev, node.dst, node.value, node.count);
        break;
      default:
        break;
    }
    if (tracer) trace_node(*tracer, node, start_ns);
    // As a failed kernel aborts a CUDA graph: what depends on it is not run.
    if (!ok) return;
  }
}

}  // namespace sunrise_rt

using namespace sunrise_rt;

extern "C" {

srError_t srStreamBeginCapture(srStream_t stream, srStreamCaptureMode mode) {
  if (srError_t e = check_stream(stream)) return e;
  if (mode != srStreamCaptureModeGlobal && mode != srStreamCaptureModeThreadLocal && mode != srStreamCaptureModeRelaxed)
    return fail(srErrorInvalidValue, "srStreamBeginCapture: unknown capture mode " + std::to_string(int(mode)));
  if (srError_t e = stream->device->report_sticky()) return e;
  auto cap = std::make_shared<Capture>();
  cap->id = g_next_capture_id.fetch_add(1, std::memory_order_relaxed);
  cap->mode = mode;
  cap->thread = std::this_thread::get_id();
  cap->origin = stream;
  cap->streams.push_back(stream);
  cap->frontier[stream];
  {
    std::lock_guard<std::mutex> lock(g_captures_mutex);
    captures()[cap->id] = cap;
    g_active.fetch_add(1, std::memory_order_acq_rel);
  }
  unsigned long long current = 0;
  {
    std::lock_guard<std::mutex> lock(stream->submit_mutex);
    if (!stream->capture || stream->capture->ended) {
      stream->capture = cap;
      return ok();
    }
    current = stream->capture->id;
  }
  finish(cap);  // never set on the stream: only forgotten again
  return fail(srErrorIllegalState,
              "srStreamBeginCapture: the stream already captures (capture " + std::to_string(current) + ")");
}

srError_t srStreamEndCapture(srStream_t stream, srGraph_t* graph) {
  if (srError_t e = check_stream(stream)) return e;
  if (graph == nullptr) return fail(srErrorInvalidValue, "srStreamEndCapture: graph is NULL");
  *graph = nullptr;
  std::shared_ptr<Capture> cap = capture_of(stream);
  if (!cap) return fail(srErrorIllegalState, "srStreamEndCapture: the stream is not capturing");
  if (cap->origin != stream) {
    invalidate(*cap, "srStreamEndCapture was called on a stream that joined the capture");
    return fail(srErrorStreamCaptureUnmatched, "srStreamEndCapture: capture " + std::to_string(cap->id) +
                                                   " must end on the stream that began it; the capture is invalidated");
  }
  if (cap->mode != srStreamCaptureModeRelaxed && cap->thread != std::this_thread::get_id())
    return fail(srErrorStreamCaptureWrongThread,
                "srStreamEndCapture: " + describe(*cap) + " must end on the thread that began it");
  finish(cap);
  // Other threads may still invalidate the ended capture (they chose it
  // before it ended): its fields are read under its lock.
  std::vector<GraphNode> nodes;
  std::vector<uint32_t> todo;
  {
    std::lock_guard<std::mutex> lock(cap->mutex);
    if (cap->invalidated)
      return fail(srErrorStreamCaptureInvalidated,
                  "srStreamEndCapture: capture " + std::to_string(cap->id) + " was invalidated: " + cap->invalid_reason);
    nodes = std::move(cap->nodes);
    todo = cap->frontier[stream];
  }
  // Every node must lead into the origin stream's last work.
  std::vector<char> joined(nodes.size(), 0);
  while (!todo.empty()) {
    const uint32_t n = todo.back();
    todo.pop_back();
    if (joined[n]) continue;
    joined[n] = 1;
    for (uint32_t d : nodes[n].deps) todo.push_back(d);
  }
  const size_t unjoined = static_cast<size_t>(std::count(joined.begin(), joined.end(), 0));
  if (unjoined > 0) {
    return fail(srErrorStreamCaptureUnjoined,
                "srStreamEndCapture: " + std::to_string(unjoined) +
                    " captured operation(s) on a forked stream are not joined back into the origin stream "
                    "(record an event after them and wait on it from the origin stream before ending the capture)");
  }
  srGraph* g = graphs().make();
  g->device = stream->device->index;
  g->nodes = std::move(nodes);
  *graph = g;
  return ok();
}

srError_t srStreamAbortCapture(srStream_t stream) {
  if (srError_t e = check_stream(stream)) return e;
  std::shared_ptr<Capture> cap = capture_of(stream);
  if (!cap || cap->origin != stream)
    return fail(srErrorIllegalState, "srStreamAbortCapture: the stream has not begun a capture");
  finish(cap);
  return ok();
}

srError_t srStreamIsCapturing(srStream_t stream, srStreamCaptureStatus* status) {
  return srStreamGetCaptureInfo(stream, status, nullptr);
}

srError_t srStreamGetCaptureInfo(srStream_t stream, srStreamCaptureStatus* status, unsigned long long* id) {
  if (srError_t e = check_stream(stream)) return e;
  if (status == nullptr) return fail(srErrorInvalidValue, "srStreamGetCaptureInfo: status is NULL");
  std::shared_ptr<Capture> cap = capture_of(stream);
  if (id) *id = cap ? cap->id : 0;
  if (!cap) {
    *status = srStreamCaptureStatusNone;
  } else {
    std::lock_guard<std::mutex> lock(cap->mutex);
    *status = cap->invalidated ? srStreamCaptureStatusInvalidated : srStreamCaptureStatusActive;
  }
  return ok();
}

srError_t srThreadExchangeStreamCaptureMode(srStreamCaptureMode* mode) {
  if (mode == nullptr) return fail(srErrorInvalidValue, "srThreadExchangeStreamCaptureMode: mode is NULL");
  const srStreamCaptureMode wanted = *mode;
  if (wanted != srStreamCaptureModeGlobal && wanted != srStreamCaptureModeThreadLocal &&
      wanted != srStreamCaptureModeRelaxed)
    return fail(srErrorInvalidValue, "srThreadExchangeStreamCaptureMode: unknown mode " + std::to_string(int(wanted)));
  *mode = t_mode;
  t_mode = wanted;
  return ok();
}

srError_t srGraphGetNodeCount(srGraph_t graph, size_t* count) {
  if (srError_t e = check_graph(graph)) return e;
  if (count == nullptr) return fail(srErrorInvalidValue, "srGraphGetNodeCount: count is NULL");
  *count = graph->nodes.size();
  return ok();
}

srError_t srGraphDebugDotPrint(srGraph_t graph, const char* path) {
  if (srError_t e = check_graph(graph)) return e;
  if (path == nullptr) return fail(srErrorInvalidValue, "srGraphDebugDotPrint: path is NULL");
  std::ofstream out(path);
  if (!out) return fail(srErrorInvalidValue, std::string("srGraphDebugDotPrint: cannot write ") + path);
  out << "digraph sunrise_graph {\n";
  for (size_t i = 0; i < graph->nodes.size(); ++i) {
    const GraphNode& n = graph->nodes[i];
    out << "  n" << i << " [label=\"" << i << ": " << kind_name(n.kind);
    if (n.kind == Task::Kind::Kernel) out << " grid " << n.grid.x << "x" << n.grid.y << "x" << n.grid.z;
    if (n.kind == Task::Kind::Copy || n.kind == Task::Kind::Set) out << " " << n.count << " bytes";
    out << "\"];\n";
    for (uint32_t d : n.deps) out << "  n" << d << " -> n" << i << ";\n";
  }
  out << "}\n";
  return out ? ok() : fail(srErrorInvalidValue, std::string("srGraphDebugDotPrint: writing ") + path + " failed");
}

srError_t srGraphDestroy(srGraph_t graph) {
  if (srError_t e = check_graph(graph)) return e;
  uint32_t expected = srGraph::kLive;
  if (!graph->magic.compare_exchange_strong(expected, 0)) return fail(srErrorInvalidResourceHandle, "graph handle was destroyed");
  std::vector<GraphNode>().swap(graph->nodes);
  return ok();
}

srError_t srGraphInstantiate(srGraphExec_t* exec, srGraph_t graph) {
  if (exec == nullptr) return fail(srErrorInvalidValue, "srGraphInstantiate: exec is NULL");
  if (srError_t e = check_graph(graph)) return e;
  srGraphExec* x = execs().make();
  x->device = graph->device;
  x->nodes = graph->nodes;
  *exec = x;
  return ok();
}

srError_t srGraphLaunch(srGraphExec_t exec, srStream_t stream) {
  if (srError_t e = check_exec(exec)) return e;
  if (srError_t e = check_stream(stream)) return e;
  if (stream->device->index != exec->device)
    return fail(srErrorInvalidValue, "srGraphLaunch: the graph was captured on device " + std::to_string(exec->device) +
                                         " but the stream belongs to device " + std::to_string(stream->device->index));
  if (capture_of(stream)) return fail(srErrorNotSupported, "srGraphLaunch: launching a graph inside a stream capture is not supported");
  if (srError_t e = stream->device->report_sticky()) return e;
  std::lock_guard<std::mutex> lock(exec->launch_mutex);
  if (!exec->valid()) return fail(srErrorInvalidResourceHandle, "executable graph handle was destroyed");
  if (exec->last_stream != nullptr && exec->last_stream != stream &&
      exec->last_stream->completed.load(std::memory_order_acquire) < exec->last_seq) {
    Task wait;
    wait.kind = Task::Kind::WaitStream;
    wait.wait_stream = exec->last_stream;
    wait.wait_seq = exec->last_seq;
    if (srError_t e = submit(stream, std::move(wait))) return e;
  }
  Task t;
  t.kind = Task::Kind::Graph;
  t.graph_exec = exec;
  uint64_t seq = 0;
  if (srError_t e = submit(stream, std::move(t), &seq)) return e;
  exec->last_stream = stream;
  exec->last_seq = seq;
  return ok();
}

srError_t srGraphExecDestroy(srGraphExec_t exec) {
  if (srError_t e = check_exec(exec)) return e;
  uint32_t expected = srGraphExec::kLive;
  if (!exec->magic.compare_exchange_strong(expected, 0))
    return fail(srErrorInvalidResourceHandle, "executable graph handle was destroyed");
  std::lock_guard<std::mutex> lock(exec->launch_mutex);
  if (exec->last_stream != nullptr) wait_for(exec->last_stream, exec->last_seq);
  std::vector<GraphNode>().swap(exec->nodes);
  return ok();
}

}  // extern "C"
