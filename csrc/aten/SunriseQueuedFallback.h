// The CPU fallback's asynchronous path: an operator without a sunrise kernel
// runs as device work on the current stream, like the hand-written ops.
//
// PyTorch knows an operator's outputs without running it: its Meta kernel
// (what fake tensors and torch.compile use) gives their sizes, strides and
// dtypes on the host. So a call without a sunrise kernel:
//   1. runs the Meta kernel over meta copies of its arguments, on the host
//      (its argument checks happen here, at the call), or replays the memo of
//      a run with the same operand metadata and argument values;
//   2. gives out= and in-place arguments that geometry, and allocates fresh
//      outputs from the caching allocator;
//   3. queues one task on the current stream that runs the CPU kernel over
//      CPU views of device memory and copies fresh results into the outputs.
// The host returns at once, except on the first call with new operand
// metadata and argument values: that call waits, so that the CPU kernel's
// errors arrive at the call (as the hand-written ops' first launches do,
// DtypeCheckedLaunch.h), and the geometry the CPU kernel gives its outputs is
// verified: it resizes its own out= tensors on that run, and where a Meta
// kernel's strides are not the CPU kernel's, the CPU's are remembered for
// later calls. Other sizes than the Meta kernel's mean outputs that depend on
// the data: the operator takes the synchronous path from then on.
//
// Calls that cannot be queued take the synchronous path (SunriseCpuFallback.cpp),
// with the reason: an operator outside ATen (its CPU kernel may be Python),
// one without a Meta kernel (but for a few host shape rules) or whose outputs
// depend on the data (the Meta kernel raises: nonzero, unique, ...), one
// returning a view of an argument, writing a CPU tensor, taking a Storage, or
// resizing an out= tensor that has elements (deprecated; CPU's warning words).
// An operator returning a host value (a bool, a number) is queued and waited
// for, as on CUDA.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace torch_sunrise::aten {

struct MetaOutcome;  // what a Meta kernel gave a call's outputs

// What the queued path knows of one operator, from its schema and its calls.
class QueuedOperator {
 public:
  // Outputs of an op without a Meta kernel, from its arguments.
  using ShapeRule = std::shared_ptr<const MetaOutcome> (*)(const c10::IValue* args, const QueuedOperator& queued);

  explicit QueuedOperator(const c10::OperatorHandle& op);
  ~QueuedOperator();

  // Sends every later call to the synchronous path, for `reason`.
  void take_sync_path(std::string reason);

  // Why every call of the operator takes the synchronous path; empty if its
  // calls may be queued.
  std::string sync_reason() const;

  // The arguments it writes (out=, in-place), by index.
  const std::vector<size_t>& written() const { return written_; }

  // How each return reaches the caller.
  struct Return {
    enum class Kind { Fresh, Argument, HostValue } kind;
    size_t argument = 0;  // Argument: the index of the (written) argument it is
  };
  const std::vector<Return>& returns() const { return returns_; }

  // The last outcomes of its Meta kernel (SunriseQueuedFallback.cpp).
  class MetaMemo;
  MetaMemo& memo() { return *memo_; }

 private:
  friend bool queue_cpu_kernel(const c10::OperatorHandle&, torch::jit::Stack*, c10::Device, QueuedOperator&,
                               std::string&);

  ShapeRule shape_rule_;  // instead of the Meta kernel, for the few ops without one
  std::vector<Return> returns_;
  std::vector<size_t> written_;
  bool returns_host_value_ = false;
  std::atomic<bool> sync_only_{false};
  mutable std::mutex mutex_;  // guards sync_reason_
  std::string sync_reason_;
  std::unique_ptr<MetaMemo> memo_;
};

// Queues the call on `stack` (the operator's arguments, on `device`) as device
// work and leaves its returns on the stack. False, with `reason`, when this
// call must take the synchronous path instead; the stack is then untouched.
bool queue_cpu_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack, c10::Device device,
                      QueuedOperator& queued, std::string& reason);

}  // namespace torch_sunrise::aten
