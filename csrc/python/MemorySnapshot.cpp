// torch_sunrise._C memory snapshot bindings: the caching allocator's segments
// and history as Python objects in torch.cuda.memory._snapshot()'s format, so
// that torch.cuda._memory_viz and the memory_viz page read them unchanged.
#include "python/MemorySnapshot.h"

#include <torch_sunrise/SunriseCachingAllocator.h>

#include <torch/csrc/Export.h>
#include <torch/csrc/profiler/combined_traceback.h>

#include <Python.h>

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace py = pybind11;

// From torch/csrc/profiler/python/combined_traceback.h, whose other
// declarations need nlohmann/json, which torch does not install.
namespace torch {
TORCH_API std::vector<pybind11::object> py_symbolize(std::vector<CapturedTraceback*>& to_symbolize);
TORCH_PYTHON_API void installCapturedTracebackPython();
}  // namespace torch

namespace torch_sunrise {
namespace {

using caching_allocator::RecordContext;
using caching_allocator::TraceEntry;

// Python frames come from threads with a Python thread state only (gathering
// takes the GIL, as on CUDA, since ops run with it released). Device threads
// never had one and must not take the GIL: the host may hold it while it
// waits for them. (autograd's backward threads have one, and no Python frames
// while they run the engine.)
bool python_thread() { return PyGILState_GetThisThreadState() != nullptr; }

std::shared_ptr<c10::GatheredContext> gather_python() {
  if (!python_thread()) return nullptr;
  return torch::CapturedTraceback::gather(/*python=*/true, /*script=*/true, /*cpp=*/false);
}

// Named as torch.cuda's gatherer, which the memory visualizer leaves out of stacks.
std::shared_ptr<c10::GatheredContext> gather_with_cpp() {
  return torch::CapturedTraceback::gather(/*python=*/python_thread(), /*script=*/true, /*cpp=*/true);
}

RecordContext parse_context(const std::string& context) {
  if (context == "state") return RecordContext::STATE;
  if (context == "alloc") return RecordContext::ALLOC;
  if (context == "all") return RecordContext::ALL;
  TORCH_CHECK_VALUE(context.empty() || context == "None", "_record_memory_history: context must be None, ",
                    "'state', 'alloc' or 'all', not '", context, "'");
  return RecordContext::NEVER;
}

const char* action_name(TraceEntry::Action action) {
  switch (action) {
    case TraceEntry::ALLOC: return "alloc";
    case TraceEntry::FREE_REQUESTED: return "free_requested";
    case TraceEntry::FREE_COMPLETED: return "free_completed";
    case TraceEntry::SEGMENT_ALLOC: return "segment_alloc";
    case TraceEntry::SEGMENT_FREE: return "segment_free";
    case TraceEntry::SEGMENT_MAP: return "segment_map";
    case TraceEntry::SEGMENT_UNMAP: return "segment_unmap";
    case TraceEntry::SNAPSHOT: return "snapshot";
    case TraceEntry::OOM: return "oom";
  }
  return "unknown";
}

// Symbolizes every stack at once (frames shared between stacks are resolved once).
class Frames {
 public:
  void want(const std::shared_ptr<c10::GatheredContext>& context) {
    auto* tb = dynamic_cast<torch::CapturedTraceback*>(context.get());
    if (tb != nullptr && index_.emplace(tb, tracebacks_.size()).second) tracebacks_.push_back(tb);
  }
  void resolve() { symbolized_ = torch::py_symbolize(tracebacks_); }
  py::object of(const std::shared_ptr<c10::GatheredContext>& context) const {
    auto it = index_.find(dynamic_cast<torch::CapturedTraceback*>(context.get()));
    return it == index_.end() ? py::object(py::list()) : symbolized_[it->second];
  }

 private:
  std::vector<torch::CapturedTraceback*> tracebacks_;
  std::unordered_map<torch::CapturedTraceback*, size_t> index_;
  std::vector<py::object> symbolized_;
};

// Streams as torch.cuda's snapshots name them: a device's default stream is
// 0 (CUDA's is the null stream), others their handle.
class StreamNames {
 public:
  StreamNames() {
    int count = 0;
    if (srGetDeviceCount(&count) != srSuccess) return;
    for (int d = 0; d < count; ++d) {
      srStream_t s = nullptr;
      if (srDeviceGetDefaultStream(d, &s) == srSuccess) defaults_.push_back(s);
    }
  }
  uintptr_t operator()(const void* stream) const {
    for (srStream_t s : defaults_) {
      if (s == stream) return 0;
    }
    return reinterpret_cast<uintptr_t>(stream);
  }

 private:
  std::vector<srStream_t> defaults_;
};

py::dict snapshot(bool include_traces) {
  const StreamNames stream_name;
  const auto segments = caching_allocator::snapshot();
  const auto traces = include_traces ? caching_allocator::traces() : std::vector<std::vector<TraceEntry>>();
  Frames frames;
  for (const auto& seg : segments) {
    frames.want(seg.context_when_allocated);
    for (const auto& b : seg.blocks) frames.want(b.context_when_allocated);
  }
  for (const auto& trace : traces) {
    for (const auto& e : trace) frames.want(e.context_);
  }
  frames.resolve();

  py::list segment_list;
  for (const auto& seg : segments) {
    py::dict d;
    d["device"] = static_cast<int>(seg.device);
    d["address"] = seg.address;
    d["total_size"] = seg.total_size;
    d["allocated_size"] = seg.allocated_size;
    d["active_size"] = seg.active_size;
    d["requested_size"] = seg.requested_size;
    d["stream"] = stream_name(seg.stream);
    d["segment_type"] = seg.is_large ? "large" : "small";
    d["segment_pool_id"] = py::make_tuple(seg.owner_private_pool_id.first, seg.owner_private_pool_id.second);
    d["is_expandable"] = false;
    d["frames"] = frames.of(seg.context_when_allocated);
    py::list blocks;
    size_t address = seg.address;
    for (const auto& b : seg.blocks) {
      py::dict bd;
      bd["address"] = address;
      bd["size"] = b.size;
      bd["requested_size"] = b.requested_size;
      bd["state"] = b.allocated ? "active_allocated" : (b.active ? "active_pending_free" : "inactive");
      bd["frames"] = frames.of(b.context_when_allocated);
      blocks.append(bd);
      address += b.size;
    }
    d["blocks"] = blocks;
    segment_list.append(d);
  }

  py::list device_traces;
  for (const auto& trace : traces) {
    py::list entries;
    for (const auto& e : trace) {
      py::dict d;
      d["action"] = action_name(e.action_);
      d[e.action_ == TraceEntry::OOM ? "device_free" : "addr"] = e.addr_;
      d["size"] = e.size_;
      d["stream"] = stream_name(e.stream_);
      d["time_us"] = static_cast<int64_t>(e.time_.approx_t_ / 1000);  // recorded as c10::getTime()'s ns
      d["frames"] = frames.of(e.context_);
      d["compile_context"] = e.compile_context_;
      d["user_metadata"] = e.user_metadata_;
      entries.append(d);
    }
    device_traces.append(entries);
  }

  py::dict out;
  out["segments"] = segment_list;
  out["device_traces"] = device_traces;
  out["allocator_settings"] = py::dict();
  out["external_annotations"] = py::list();
  return out;
}

}  // namespace

void bind_memory_snapshot(py::module_& m) {
  m.def("_memory_snapshot", &snapshot, py::arg("include_traces") = true);
  m.def("_record_memory_history",
        [](bool record_events, const std::string& context, bool cpp_stacks, size_t max_entries,
           bool clear_history) {
          // Lets CapturedTraceback see Python frames (torch.cuda does the same); each
          // install adds an unwinder, so once.
          static std::once_flag python_frames;
          std::call_once(python_frames, [] { torch::installCapturedTracebackPython(); });
          caching_allocator::recordHistory(record_events, cpp_stacks ? &gather_with_cpp : &gather_python,
                                           max_entries, parse_context(context), clear_history);
        });
}

}  // namespace torch_sunrise
