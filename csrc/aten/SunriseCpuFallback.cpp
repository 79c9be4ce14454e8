// The boxed CPU fallback.
//
// Any operator without a sunrise kernel lands here, and runs ATen's CPU
// kernel over device memory. Devices are checked first, as on CUDA: all
// device tensors on one sunrise device; CPU tensors only as 0-dim scalars
// (and index lists, which CUDA accepts on the CPU too). Then:
//   - the queued path (SunriseQueuedFallback.h): the CPU kernel runs as
//     device work on the current stream, its outputs sized by the operator's
//     Meta kernel; the host does not wait;
//   - where that cannot be (no Meta kernel, outputs that depend on the data,
//     view returns), the synchronous path runs the CPU kernel on the host:
//     1. The current stream of the device is synchronized, so pending device
//        work on the arguments has finished.
//     2. Device tensors are passed as CPU views of the same bytes (no copies);
//        tensors sharing device storage share CPU storage, so in-place ops,
//        out= arguments and aliasing checks behave as on CPU.
//     3. Afterwards, a mutated argument whose CPU storage the kernel replaced
//        (an out= argument grown by resize) is written back to device storage;
//        returned tensors that alias an argument become device views of it;
//        fresh results are copied into new device tensors.
// Random ops draw from the sunrise generator (explicit or the device default),
// through a CPU generator derived from its (seed, offset).
#include "SunriseCpuFallback.h"
#include "SunriseHostCompute.h"
#include "SunriseQueuedFallback.h"

#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGenerator.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseHostWait.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/util/env.h>
#include <torch/library.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_set>

namespace torch_sunrise::aten {
namespace {

// ---------------------------------------------------------------- accounting

// What the fallback knows and counts of one operator.
struct FallbackOperator {
  explicit FallbackOperator(const c10::OperatorHandle& op)
      : name(op.schema().overload_name().empty() ? op.schema().name()
                                                 : op.schema().name() + "." + op.schema().overload_name()),
        queued(op) {}

  const std::string name;
  QueuedOperator queued;
  std::atomic<uint64_t> sync_calls{0};
  std::atomic<uint64_t> sync_nanoseconds{0};
  std::atomic<uint64_t> queued_calls{0};
  std::atomic<uint64_t> queued_nanoseconds{0};
  std::atomic<bool> warned{false};
  std::mutex mutex;  // guards sync_reason
  std::string sync_reason;  // of its last synchronous call
};

struct FallbackOperators {
  std::mutex mutex;
  // Keyed by schema address, which is stable while the operator is registered.
  std::unordered_map<const c10::FunctionSchema*, std::unique_ptr<FallbackOperator>> by_schema;
};

FallbackOperators& fallback_operators() {
  // Leaked on purpose: ops may run during static destruction.
  static FallbackOperators* ops = std::make_unique<FallbackOperators>().release();
  return *ops;
}

FallbackOperator& fallback_operator(const c10::OperatorHandle& op) {
  FallbackOperators& ops = fallback_operators();
  const std::lock_guard<std::mutex> lock(ops.mutex);
  std::unique_ptr<FallbackOperator>& entry = ops.by_schema[&op.schema()];
  if (!entry) entry = std::make_unique<FallbackOperator>(op);
  return *entry;
}

uint64_t nanoseconds_since(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
}

FallbackMode mode_from_env() {
  const auto value = c10::utils::get_env("SUNRISE_FALLBACK");
  if (!value || value->empty() || *value == "warn") return FallbackMode::Warn;
  if (*value == "silent") return FallbackMode::Silent;
  if (*value == "error") return FallbackMode::Error;
  TORCH_WARN("SUNRISE_FALLBACK='", *value, "' is not one of warn, silent, error; using warn");
  return FallbackMode::Warn;
}

std::atomic<FallbackMode>& mode_ref() {
  static std::atomic<FallbackMode> mode{mode_from_env()};
  return mode;
}

// SUNRISE_QUEUED_FALLBACK=0 sends every call to the synchronous path (to
// compare, or to rule the queued path out while debugging).
bool queued_path_enabled() {
  static const bool enabled = [] {
    const auto value = c10::utils::get_env("SUNRISE_QUEUED_FALLBACK");
    return !value || *value != "0";
  }();
  return enabled;
}

// ------------------------------------------------------------------- devices

// Ops whose CPU tensor arguments are part of their contract on CUDA too.
bool accepts_cpu_tensors(const std::string& op_name) {
  static const std::unordered_set<std::string> ops = {
      "aten::_pack_padded_sequence", "aten::_pad_packed_sequence", "aten::_pack_padded_sequence_backward",
  };
  return ops.count(op_name) != 0;
}

// Returns of these ops stay on the CPU, as on CUDA (e.g. batch_sizes).
bool keeps_return_on_cpu(const std::string& op_name, size_t return_index) {
  return op_name == "aten::_pack_padded_sequence" && return_index == 1;
}

struct DeviceCheck {
  std::optional<c10::Device> device;
  const std::string* op_name;
  bool allow_cpu;

  void sunrise(const at::Tensor& t) {
    if (!device) {
      device = t.device();
      return;
    }
    TORCH_CHECK(*device == t.device(), "Expected all tensors to be on the same device, but found at least two devices, ",
                *device, " and ", t.device(), "! (when checking arguments for ", *op_name, ")");
  }
  void tensor(const at::Tensor& t, bool is_index) {
    if (!t.defined()) return;
    TORCH_CHECK_NOT_IMPLEMENTED(t.layout() == c10::Layout::Strided, *op_name, ": sunrise supports strided (dense) "
                                "tensors only, got layout ", t.layout());
    if (t.device().is_privateuseone()) {
      sunrise(t);
    } else {
      TORCH_CHECK(t.device().is_cpu(), *op_name, ": sunrise cannot mix with ", t.device(), " tensors");
      TORCH_CHECK(allow_cpu || is_index || t.dim() == 0,
                  "Expected all tensors to be on the same device, but found at least two devices, sunrise and cpu! "
                  "(when checking arguments for ",
                  *op_name, ")");
    }
  }
};

void announce(FallbackOperator& op) {
  const FallbackMode mode = fallback_mode();
  TORCH_CHECK_NOT_IMPLEMENTED(mode != FallbackMode::Error, "The operator '", op.name,
                              "' has no sunrise kernel and cannot run as device work (", op.sync_reason,
                              "); SUNRISE_FALLBACK=error forbids running it on the CPU synchronously. "
                              "Unset SUNRISE_FALLBACK (or set it to warn) to allow the CPU fallback.");
  if (mode == FallbackMode::Silent || op.warned.exchange(true)) return;
  TORCH_WARN("The operator '", op.name, "' has no sunrise kernel and ran on the CPU, synchronizing the device (",
             op.sync_reason, "); results are correct. SUNRISE_FALLBACK=silent hides these warnings, =error "
             "forbids the fallback; torch_sunrise.fallback_stats() counts the calls.");
}

void sunrise_cpu_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto start = std::chrono::steady_clock::now();
  const c10::FunctionSchema& schema = op.schema();
  FallbackOperator& record = fallback_operator(op);
  const std::string& name = record.name;
  // Marks the fallback in profiler traces: a scope inside the op's own, to
  // which queued device work is linked too.
  RECORD_USER_SCOPE("sunrise::cpu_fallback<" + name + ">");

  const auto& arguments = schema.arguments();
  const size_t num_args = arguments.size();
  const size_t first = stack->size() - num_args;

  // 1. Devices.
  DeviceCheck check{std::nullopt, &name, accepts_cpu_tensors(schema.name())};
  for (size_t i = 0; i < num_args; ++i) {
    const c10::IValue& v = (*stack)[first + i];
    if (v.isTensor()) {
      check.tensor(v.toTensor(), false);
    } else if (v.isTensorList()) {
      for (const at::Tensor& t : v.toTensorList().vec()) check.tensor(t, false);
    } else if (v.isOptionalTensorList()) {
      for (const std::optional<at::Tensor>& t : v.toOptionalTensorList().vec()) {
        if (t) check.tensor(*t, true);
      }
    } else if (v.isDevice() && v.toDevice().is_privateuseone() && !check.device) {
      check.device = v.toDevice();
    }
  }
  c10::Device device = check.device.value_or(c10::Device(c10::DeviceType::PrivateUse1, current_device()));
  if (!device.has_index()) device = c10::Device(c10::DeviceType::PrivateUse1, current_device());
  check_device_index(device.index());

  // 2. As device work, if it can be.
  std::string reason;
  if (check.allow_cpu) {
    reason = "it takes or returns CPU tensors";
  } else if (!queued_path_enabled()) {
    reason = "SUNRISE_QUEUED_FALLBACK=0";
  } else if (queue_cpu_kernel(op, stack, device, record.queued, reason)) {
    record.queued_calls.fetch_add(1, std::memory_order_relaxed);
    record.queued_nanoseconds.fetch_add(nanoseconds_since(start), std::memory_order_relaxed);
    return;
  }
  {
    const std::lock_guard<std::mutex> lock(record.mutex);
    record.sync_reason = std::move(reason);
  }
  {
    const std::string what = "operator '" + name + "' (it has no sunrise kernel and runs on the CPU after "
                             "synchronizing the device)";
    before_host_wait(getCurrentSunriseStream(device.index()), what.c_str(), "move it out of the captured region");
  }
  announce(record);

  // 3. Synchronously: stream order, as constructing it synchronizes the
  // device's current stream.
  HostCompute host(device);

  // 3. CPU arguments over device memory.
  std::vector<c10::IValue> cpu_args;
  cpu_args.reserve(num_args);
  for (size_t i = 0; i < num_args; ++i) {
    const c10::IValue& v = (*stack)[first + i];
    if (v.isTensor()) {
      cpu_args.emplace_back(host.in(v.toTensor()));
    } else if (v.isTensorList()) {
      c10::List<at::Tensor> list;
      for (const at::Tensor& t : v.toTensorList().vec()) list.push_back(host.in(t));
      cpu_args.emplace_back(std::move(list));
    } else if (v.isOptionalTensorList()) {
      c10::List<std::optional<at::Tensor>> list;
      for (const std::optional<at::Tensor>& t : v.toOptionalTensorList().vec()) {
        list.push_back(t ? std::optional<at::Tensor>(host.in(*t)) : std::nullopt);
      }
      cpu_args.emplace_back(std::move(list));
    } else if (v.isDevice() && v.toDevice().is_privateuseone()) {
      cpu_args.emplace_back(c10::Device(c10::DeviceType::CPU));
    } else if (is_generator_argument(arguments[i])) {
      cpu_args.emplace_back(cpu_generator_for(v, device.index(), name));
    } else {
      cpu_args.emplace_back(v);
    }
  }

  // Run the CPU kernel.
  torch::jit::Stack cpu_stack(cpu_args.begin(), cpu_args.end());
  op.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::CPU), &cpu_stack);

  // 4. Mutated arguments back to the device.
  for (size_t i = 0; i < num_args; ++i) {
    const auto* alias = arguments[i].alias_info();
    if (alias == nullptr || !alias->isWrite()) continue;
    const c10::IValue& dev = (*stack)[first + i];
    const c10::IValue& cpu = cpu_args[i];
    if (dev.isTensor()) {
      host.write_back(dev.toTensor(), cpu.toTensor());
    } else if (dev.isTensorList()) {
      const auto devs = dev.toTensorList().vec();
      const auto cpus = cpu.toTensorList().vec();
      for (size_t k = 0; k < devs.size(); ++k) host.write_back(devs[k], cpus[k]);
    }
  }

  // Returns.
  const size_t num_returns = schema.returns().size();
  TORCH_INTERNAL_ASSERT(cpu_stack.size() == num_returns, name, ": expected ", num_returns, " returns, got ",
                        cpu_stack.size());
  torch::jit::drop(*stack, num_args);
  for (size_t j = 0; j < num_returns; ++j) {
    c10::IValue& r = cpu_stack[j];
    if (keeps_return_on_cpu(schema.name(), j)) {
      stack->push_back(std::move(r));
    } else if (r.isTensor()) {
      stack->emplace_back(host.out(r.toTensor()));
    } else if (r.isTensorList()) {
      c10::List<at::Tensor> list;
      for (const at::Tensor& t : r.toTensorList().vec()) list.push_back(host.out(t));
      stack->emplace_back(std::move(list));
    } else {
      stack->push_back(std::move(r));
    }
  }
  record.sync_calls.fetch_add(1, std::memory_order_relaxed);
  record.sync_nanoseconds.fetch_add(nanoseconds_since(start), std::memory_order_relaxed);
}

}  // namespace

bool is_generator_argument(const c10::Argument& arg) {
  if (arg.type()->kind() == c10::TypeKind::GeneratorType) return true;
  const auto opt = arg.type()->cast<c10::OptionalType>();
  return opt && opt->getElementType()->kind() == c10::TypeKind::GeneratorType;
}

at::Generator cpu_generator_for(const c10::IValue& gen, c10::DeviceIndex device, const std::string& op_name) {
  at::Generator source = gen.isGenerator() && gen.toGenerator().defined() ? gen.toGenerator()
                                                                          : getDefaultSunriseGenerator(device);
  TORCH_CHECK(source.device().is_privateuseone(), "Expected a 'sunrise' device type for generator but found '",
              source.device().type(), "' (in ", op_name, ")");
  auto* impl = source.get<SunriseGeneratorImpl>();
  const std::lock_guard<std::mutex> lock(impl->mutex_);
  return impl->derive_cpu_generator(getCurrentSunriseStream(device));
}

FallbackMode fallback_mode() { return mode_ref().load(std::memory_order_relaxed); }
void set_fallback_mode(FallbackMode mode) { mode_ref().store(mode, std::memory_order_relaxed); }

std::unordered_map<std::string, FallbackStat> fallback_stats() {
  FallbackOperators& ops = fallback_operators();
  const std::lock_guard<std::mutex> lock(ops.mutex);
  std::unordered_map<std::string, FallbackStat> stats;
  for (const auto& [schema, op] : ops.by_schema) {
    FallbackStat s;
    s.calls = op->sync_calls.load(std::memory_order_relaxed);
    s.nanoseconds = op->sync_nanoseconds.load(std::memory_order_relaxed);
    s.queued_calls = op->queued_calls.load(std::memory_order_relaxed);
    s.queued_nanoseconds = op->queued_nanoseconds.load(std::memory_order_relaxed);
    if (s.calls == 0 && s.queued_calls == 0) continue;
    {
      const std::lock_guard<std::mutex> op_lock(op->mutex);
      s.sync_reason = op->sync_reason;
    }
    stats.emplace(op->name, std::move(s));
  }
  return stats;
}

void reset_fallback_stats() {
  FallbackOperators& ops = fallback_operators();
  const std::lock_guard<std::mutex> lock(ops.mutex);
  for (const auto& [schema, op] : ops.by_schema) {
    for (auto* counter : {&op->sync_calls, &op->sync_nanoseconds, &op->queued_calls, &op->queued_nanoseconds}) {
      counter->store(0, std::memory_order_relaxed);
    }
    op->warned.store(false, std::memory_order_relaxed);
  }
}

TORCH_LIBRARY_IMPL(_, PrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&sunrise_cpu_fallback>());
}

// Ops with a generic kernel (CompositeExplicitAutograd), which would win over
// the backend fallback, sent to the CPU kernel explicitly:
//  - addr, addr.out: their decompositions round intermediates to the input
//    dtype (bfloat16), where the CPU kernels keep float32.
//  - addr_: its generic kernel calls addr.out(self, out=self), and the CPU
//    addr.out tells in-place from out= by argument address (&result == &self),
//    which a boxed call cannot keep (each argument is its own IValue): it
//    would resize self instead of raising. Run addr_ itself on the CPU.
//  - mode.values: its generic kernel rejects any device but CPU/CUDA/XPU.
TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const char* op : {"addr", "addr.out", "addr_", "mode.values"}) {
    m.impl(op, torch::CppFunction::makeFromBoxedFunction<&sunrise_cpu_fallback>());
  }
}

}  // namespace torch_sunrise::aten
