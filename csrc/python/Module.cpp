// torch_sunrise._C: the Python bindings. Thin: every function forwards to the
// C++ layers (runtime glue, allocator, fallback); Python-facing names and
// behaviour are shaped in torch_sunrise/sunrise/*.py.
#include "aten/SunriseCpuFallback.h"
#include "distributed/ProcessGroupSCCL.h"
#include "kernels/CompiledKernel.h"
#include "python/MemorySnapshot.h"

#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGenerator.h>
#include <torch_sunrise/SunriseGraph.h>
#include <torch_sunrise/SunriseHostAllocator.h>
#include <torch_sunrise/SunriseHostWait.h>
#include <torch_sunrise/SunriseLaunch.h>
#include <torch_sunrise/SunriseStream.h>

#include <ATen/Context.h>
#include <ATen/record_function.h>
#include <torch/csrc/Generator.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/device_lazy_init.h>
#include <torch/csrc/utils/pybind.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace py = pybind11;

namespace torch_sunrise {
namespace {

// Python ints are range-checked before they narrow to c10::DeviceIndex (int8).
c10::DeviceIndex index_arg(int d) {
  check_device_index(d);
  return static_cast<c10::DeviceIndex>(d);
}

py::dict stat_dict(const c10::CachingAllocator::Stat& s) {
  py::dict d;
  d["current"] = s.current;
  d["peak"] = s.peak;
  d["allocated"] = s.allocated;
  d["freed"] = s.freed;
  return d;
}

py::dict stat_array_dict(const c10::CachingAllocator::StatArray& a) {
  py::dict d;
  d["all"] = stat_dict(a[0]);
  d["small_pool"] = stat_dict(a[1]);
  d["large_pool"] = stat_dict(a[2]);
  return d;
}

py::dict device_stats(c10::DeviceIndex device) {
  const auto s = caching_allocator::getDeviceStats(device);
  py::dict d;
  d["allocation"] = stat_array_dict(s.allocation);
  d["segment"] = stat_array_dict(s.segment);
  d["active"] = stat_array_dict(s.active);
  d["inactive_split"] = stat_array_dict(s.inactive_split);
  d["allocated_bytes"] = stat_array_dict(s.allocated_bytes);
  d["reserved_bytes"] = stat_array_dict(s.reserved_bytes);
  d["active_bytes"] = stat_array_dict(s.active_bytes);
  d["inactive_split_bytes"] = stat_array_dict(s.inactive_split_bytes);
  d["requested_bytes"] = stat_array_dict(s.requested_bytes);
  d["num_alloc_retries"] = s.num_alloc_retries;
  d["num_ooms"] = s.num_ooms;
  d["num_sync_all_streams"] = s.num_sync_all_streams;
  d["num_device_alloc"] = s.num_device_alloc;
  d["num_device_free"] = s.num_device_free;
  d["oversize_allocations"] = stat_dict(s.oversize_allocations);
  d["oversize_segments"] = stat_dict(s.oversize_segments);
  d["max_split_size"] = s.max_split_size;
  return d;
}

py::tuple stream_tuple(const SunriseStream& s) {
  return py::make_tuple(s.id(), static_cast<int>(s.device_index()), static_cast<int>(s.device().type()));
}

SunriseStream stream_from(int64_t stream_id, int device_index) {
  return SunriseStream(c10::Stream(c10::Stream::UNSAFE,
                                   c10::Device(c10::DeviceType::PrivateUse1, index_arg(device_index)),
                                   stream_id));
}

aten::FallbackMode parse_mode(const std::string& mode) {
  if (mode == "warn") return aten::FallbackMode::Warn;
  if (mode == "silent") return aten::FallbackMode::Silent;
  if (mode == "error") return aten::FallbackMode::Error;
  TORCH_CHECK_VALUE(false, "fallback mode must be 'warn', 'silent' or 'error', got '", mode, "'");
}

// Direct access to the runtime's C API, for tests of its error reporting and
// for framework engineers poking at the emulator. Pointers and handles are ints.
void bind_runtime(py::module_& m) {
  auto rt = m.def_submodule("_runtime", "The emulated GPGPU runtime's C API (sunrise_rt), unwrapped.");
  rt.def("malloc", [](size_t size) {
    void* p = nullptr;
    SUNRISE_CHECK(srMalloc(&p, size));
    return reinterpret_cast<uintptr_t>(p);
  });
  rt.def("free", [](uintptr_t p) { SUNRISE_CHECK(srFree(reinterpret_cast<void*>(p))); });
  rt.def("stream_synchronize", [](uintptr_t handle) {
    SUNRISE_CHECK(srStreamSynchronize(reinterpret_cast<srStream_t>(handle)));
  });
  rt.def("stream_query", [](uintptr_t handle) {
    const srError_t err = srStreamQuery(reinterpret_cast<srStream_t>(handle));
    if (err == srErrorNotReady) return false;
    SUNRISE_CHECK(err);
    return true;
  });
  rt.def("memcpy_htod", [](uintptr_t dst, uintptr_t src, size_t n) {
    SUNRISE_CHECK(srMemcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n, srMemcpyHostToDevice));
  });
  rt.def("memcpy_dtoh", [](uintptr_t dst, uintptr_t src, size_t n) {
    SUNRISE_CHECK(srMemcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n, srMemcpyDeviceToHost));
  });
  rt.def(
      "inject_async_error",
      [](int d, const std::string& message, const std::optional<at::Tensor>& holding, bool std_exception) {
        // Device work that fails: for testing how code copes with asynchronous
        // device errors (raised at the next synchronizing call), and that a
        // failed task still releases what it holds, whatever it threw.
        launch_task(getCurrentSunriseStream(index_arg(d)), [message, holding, std_exception] {
          if (!std_exception) throw 42;
          throw std::runtime_error(message);
        });
      },
      py::arg("device"), py::arg("message"), py::arg("holding") = std::nullopt, py::arg("std_exception") = true);
  // torch.cuda._sleep's counterpart: the current stream is busy for `ns`
  // nanoseconds without taking a core (a GPU's spin kernel holds no host core).
  rt.def("sleep", [](int d, int64_t ns) {
    launch_task(getCurrentSunriseStream(index_arg(d)),
                [ns] { std::this_thread::sleep_for(std::chrono::nanoseconds(ns)); });
  });
  rt.def("device_busy_ns", [](int d) {
    long long ns = 0;
    SUNRISE_CHECK(srDeviceGetBusyTime(index_arg(d), &ns));
    return ns;
  });
  rt.def("pointer_type", [](uintptr_t p) {
    srPointerAttributes attr{};
    SUNRISE_CHECK(srPointerGetAttributes(&attr, reinterpret_cast<const void*>(p)));
    switch (attr.type) {
      case srMemoryTypeDevice: return std::string("device");
      case srMemoryTypeHost: return std::string("pinned");
      default: return std::string("pageable");
    }
  });
}

// A kernel Inductor compiled for sunrise, callable from the generated wrapper
// as the CPU's pybinding kernels are: tensors and Python scalars, positionally.
// `library` keeps the shared object that holds the entry point loaded.
class CompiledKernel {
 public:
  CompiledKernel(uintptr_t entry, py::object library, std::string name)
      : entry_(reinterpret_cast<kernels::CompiledKernelEntry>(entry)),
        library_(std::move(library)),
        name_(std::move(name)) {}

  void operator()(const py::args& args) const {
    // Inductor's wrapper calls kernels outside any op: a scope of the kernel's
    // name, so that profiler traces name its device work after it.
    RECORD_USER_SCOPE(name_);
    std::vector<kernels::CompiledKernelArg> parsed(args.size());
    for (size_t i = 0; i < args.size(); ++i) {
      PyObject* obj = args[i].ptr();
      kernels::CompiledKernelArg& arg = parsed[i];
      if (THPVariable_Check(obj)) {
        arg.tensor = THPVariable_Unpack(obj);
      } else if (PyLong_Check(obj)) {
        // Sizes and offsets are signed; raw addresses may use the top bit.
        arg.bits = PyLong_AsUnsignedLongLongMask(obj);
        if (arg.bits == static_cast<uint64_t>(-1) && PyErr_Occurred()) throw py::error_already_set();
      } else if (PyFloat_Check(obj)) {
        const double value = PyFloat_AS_DOUBLE(obj);
        std::memcpy(&arg.bits, &value, sizeof(value));
      } else {
        TORCH_CHECK_TYPE(false, "sunrise: argument ", i, " of a compiled kernel is a ", Py_TYPE(obj)->tp_name,
                         "; expected a tensor, an int or a float");
      }
    }
    kernels::launch_compiled_kernel(entry_, parsed);
  }

 private:
  kernels::CompiledKernelEntry entry_;
  py::object library_;
  std::string name_;
};

// The c10d backend's class, a subclass of torch's c10d Backend binding: bound
// on first use (torch_sunrise.distributed), when torch.distributed's own
// bindings surely exist.
void bind_distributed(py::module_& m) {
  if (py::hasattr(m, "ProcessGroupSCCL")) return;
  py::class_<distributed::ProcessGroupSCCL, c10d::Backend, c10::intrusive_ptr<distributed::ProcessGroupSCCL>>(
      m, "ProcessGroupSCCL")
      .def(py::init([](const c10::intrusive_ptr<c10d::Backend>& transport,
                       const std::optional<c10::intrusive_ptr<c10d::Backend>>& checker, int rank, int size) {
             return c10::make_intrusive<distributed::ProcessGroupSCCL>(
                 transport, checker.value_or(c10::intrusive_ptr<c10d::Backend>()), rank, size);
           }),
           py::arg("transport"), py::arg("checker"), py::arg("rank"), py::arg("size"));
}

}  // namespace
}  // namespace torch_sunrise

PYBIND11_MODULE(_C, m) {
  using namespace torch_sunrise;
  m.doc() = "torch_sunrise native extension";

  py::class_<CompiledKernel>(m, "_CompiledKernel")
      .def(py::init<uintptr_t, py::object, std::string>(), py::arg("entry"), py::arg("library"), py::arg("name"))
      .def("__call__", &CompiledKernel::operator());

  // torch.sunrise.SunriseGraph's base, as torch._C._CUDAGraph is torch.cuda.CUDAGraph's.
  py::class_<SunriseGraph>(m, "_SunriseGraph")
      .def(py::init([](bool keep_graph) { return std::make_unique<SunriseGraph>(at::GraphImplArgs{keep_graph}); }),
           py::arg("keep_graph") = false)
      .def(
          "capture_begin",
          [](SunriseGraph& g, std::optional<c10::MempoolId_t> pool, const std::string& mode) {
            at::GraphCaptureMode m = at::GraphCaptureMode::Global;
            if (mode == "thread_local") m = at::GraphCaptureMode::ThreadLocal;
            else if (mode == "relaxed") m = at::GraphCaptureMode::Relaxed;
            else TORCH_CHECK_VALUE(mode == "global" || mode == "default", "Unknown capture error mode '", mode,
                                   "': expected 'global', 'thread_local' or 'relaxed'");
            g.capture_begin(pool.value_or(c10::MempoolId_t{0, 0}), m);
          },
          py::arg("pool") = std::nullopt, py::arg("capture_error_mode") = "global")
      .def("capture_end", &SunriseGraph::capture_end, py::call_guard<py::gil_scoped_release>())
      .def("instantiate", &SunriseGraph::instantiate, py::call_guard<py::gil_scoped_release>())
      .def("replay", &SunriseGraph::replay, py::call_guard<py::gil_scoped_release>())
      .def("reset", &SunriseGraph::reset, py::call_guard<py::gil_scoped_release>())
      .def("pool", &SunriseGraph::pool)
      .def("enable_debug_mode", &SunriseGraph::enable_debug_mode)
      .def("debug_dump", &SunriseGraph::debug_dump)
      .def("node_count", &SunriseGraph::node_count)
      .def("register_generator_state", [](SunriseGraph& g, py::handle generator) {
        TORCH_CHECK_TYPE(THPGenerator_Check(generator.ptr()), "register_generator_state expects a torch.Generator");
        g.register_generator_state(reinterpret_cast<THPGenerator*>(generator.ptr())->cdata);
      });
  m.def("_graph_pool_handle", &graph_pool_handle);
  m.def("_set_sync_debug_mode", [](int mode) {
    TORCH_CHECK(mode >= 0 && mode <= 2, "invalid value of debug_mode, expected one of 0, 1, 2");
    set_sync_debug_mode(static_cast<SyncDebugMode>(mode));
  });
  m.def("_get_sync_debug_mode", [] { return static_cast<int>(sync_debug_mode()); });
  m.def("_is_current_stream_capturing", [](int d) { return getCurrentSunriseStream(index_arg(d)).is_capturing(); });
  m.def("_graph_pool_use_count", [](int d, c10::MempoolId_t pool) {
    return caching_allocator::getPoolUseCount(index_arg(d), pool);
  });

  m.def("_init_distributed", [m]() mutable { bind_distributed(m); });

  m.def("_init", [] {
    torch::utils::register_fork_handler_for_device_init(at::kPrivateUse1);
    at::globalContext().lazyInitDevice(c10::DeviceType::PrivateUse1);
    // torch's own "initialized" flag (checked by e.g. empty_host_cache).
    torch::utils::set_requires_device_init(at::kPrivateUse1, false);
  });
  m.def("_is_in_bad_fork", [] { return torch::utils::is_device_in_bad_fork(at::kPrivateUse1); });

  m.def("_device_count", [] { return static_cast<int>(device_count()); });
  m.def("_get_device", [] { return static_cast<int>(current_device()); });
  m.def("_set_device", [](int d) { set_device(index_arg(d)); });
  m.def("_exchange_device", [](int d) {
    if (d < 0) return -1;
    return static_cast<int>(exchange_device(index_arg(d)));
  });
  m.def("_synchronize", [](int d) {
    py::gil_scoped_release no_gil;
    device_synchronize(index_arg(d));
  });
  m.def("_get_device_properties", [](int d) {
    index_arg(d);
    srDeviceProp p{};
    SUNRISE_CHECK(srGetDeviceProperties(&p, d));
    py::dict out;
    out["name"] = std::string(p.name);
    out["total_memory"] = p.totalGlobalMem;
    out["multi_processor_count"] = p.multiProcessorCount;
    out["major"] = p.major;
    out["minor"] = p.minor;
    out["max_threads_per_block"] = p.maxThreadsPerBlock;
    out["warp_size"] = p.warpSize;
    out["shared_memory_per_block"] = p.sharedMemPerBlock;
    out["serial_work_us"] = p.serialWorkUs;
    return out;
  });

  m.def("_get_default_generator", [](int d) {
    return py::reinterpret_steal<py::object>(
        THPGenerator_initDefaultGenerator(getDefaultSunriseGenerator(index_arg(d))));
  });

  m.def("_current_stream", [](int d) { return stream_tuple(getCurrentSunriseStream(index_arg(d))); });
  m.def("_default_stream", [](int d) { return stream_tuple(getDefaultSunriseStream(index_arg(d))); });
  m.def("_stream_from_pool", [](int priority, int d) {
    return stream_tuple(getStreamFromPool(priority, index_arg(d)));
  });
  m.def("_set_stream", [](int64_t id, int d) { setCurrentSunriseStream(stream_from(id, d)); });
  m.def("_stream_handle", [](int64_t id, int d) { return reinterpret_cast<uintptr_t>(stream_from(id, d).handle()); });
  m.def("_event_elapsed_time", [](uintptr_t start, uintptr_t end) {
    TORCH_CHECK_VALUE(start != 0 && end != 0, "Both events must be recorded before calculating elapsed time.");
    float ms = 0;
    SUNRISE_CHECK(srEventElapsedTime(&ms, reinterpret_cast<srEvent_t>(start), reinterpret_cast<srEvent_t>(end)));
    return static_cast<double>(ms);
  });
  m.attr("_streams_per_pool") = kStreamsPerPool;
  m.def("_stream_priority_range", [] { return SunriseStream::priority_range(); });

  m.def("_memory_stats", [](int d) { return device_stats(index_arg(d)); });
  bind_memory_snapshot(m);
  m.def("_empty_cache", [] {
    py::gil_scoped_release no_gil;
    caching_allocator::emptyCache();
  });
  m.def("_reset_peak_memory_stats", [](int d) { caching_allocator::resetPeakStats(index_arg(d)); });
  m.def("_reset_accumulated_memory_stats",
        [](int d) { caching_allocator::resetAccumulatedStats(index_arg(d)); });
  m.def("_mem_get_info", [](int d) { return caching_allocator::get()->getMemoryInfo(index_arg(d)); });
  m.def("_set_memory_fraction",
        [](double f, int d) { caching_allocator::setMemoryFraction(f, index_arg(d)); });
  m.def("_host_memory_stats", [] {
    const auto s = getCachingHostAllocator()->get_stats();
    py::dict d;
    d["allocations"] = stat_dict(s.allocations);
    d["allocated_bytes"] = stat_dict(s.allocated_bytes);
    d["active_requests"] = stat_dict(s.active_requests);
    d["active_bytes"] = stat_dict(s.active_bytes);
    d["num_host_alloc"] = s.num_host_alloc;
    d["num_host_free"] = s.num_host_free;
    return d;
  });
  m.def("_host_empty_cache", [] { getCachingHostAllocator()->empty_cache(); });
  m.def("_reset_peak_host_memory_stats", [] { getCachingHostAllocator()->reset_peak_stats(); });
  m.def("_reset_accumulated_host_memory_stats", [] { getCachingHostAllocator()->reset_accumulated_stats(); });
  m.def("_get_memory_fraction", [](int d) { return caching_allocator::getMemoryFraction(index_arg(d)); });
  m.def("_stream_priority", [](int64_t id, int d) { return stream_from(id, d).priority(); });

  m.def("_fallback_stats", [] {
    py::dict d;
    for (const auto& [name, stat] : aten::fallback_stats()) {
      d[py::str(name)] = py::make_tuple(stat.calls, stat.nanoseconds, stat.queued_calls, stat.queued_nanoseconds,
                                        stat.sync_reason);
    }
    return d;
  });
  m.def("_reset_fallback_stats", &aten::reset_fallback_stats);
  m.def("_set_fallback_mode", [](const std::string& mode) { aten::set_fallback_mode(parse_mode(mode)); });
  m.def("_get_fallback_mode", [] {
    switch (aten::fallback_mode()) {
      case aten::FallbackMode::Warn: return std::string("warn");
      case aten::FallbackMode::Silent: return std::string("silent");
      case aten::FallbackMode::Error: return std::string("error");
    }
    return std::string("warn");
  });

  bind_runtime(m);
}
