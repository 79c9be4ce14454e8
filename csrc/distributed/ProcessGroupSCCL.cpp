#include "distributed/ProcessGroupSCCL.h"

#include "kernels/CpuViews.h"

#include <torch_sunrise/SunriseEvent.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseLaunch.h>

#include <ATen/core/ivalue.h>
#include <ATen/core/jit_type.h>
#include <c10/core/StreamGuard.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace torch_sunrise::distributed {

// What the device thread learned of a collective: its error, if any.
struct CollectiveState {
  mutable std::mutex mutex;
  std::exception_ptr error;

  std::exception_ptr get() const {
    const std::lock_guard<std::mutex> lock(mutex);
    return error;
  }
};

namespace {

// A queued collective. Its end is an event on the communication stream;
// waiting makes the caller's current stream wait for it, as NCCL's work does.
// Point-to-point ops of a coalescing group share one work, which is launched
// (its event recorded, its future completed) when the group ends.
class WorkSCCL final : public c10d::Work {
 public:
  WorkSCCL(int rank, c10d::OpType type, c10::DeviceIndex device, std::shared_ptr<const CollectiveState> state,
           bool blocking)
      // No profiling title: nothing would close its record function.
      : Work(rank, type), device_(device), state_(std::move(state)), blocking_(blocking) {}

  void add_outputs(const std::vector<at::Tensor>& outputs) {
    outputs_.insert(outputs_.end(), outputs.begin(), outputs.end());
  }

  // After the collective's task was queued on `comm`.
  void launched(const SunriseStream& comm) {
    end_.record(comm);
    // A device future, as NCCL's: completed now, its value ready on the
    // communication stream (the future records its own event there).
    future_ = c10::make_intrusive<c10::ivalue::Future>(c10::ListType::create(c10::TensorType::get()),
                                                       std::vector<c10::Device>{comm.device()});
    const c10::StreamGuard on_comm(comm.unwrap());
    future_->markCompleted(c10::IValue(outputs_));
  }

  bool isCompleted() override { return future_ && end_.query(); }
  bool isSuccess() const override { return state_->get() == nullptr; }
  std::exception_ptr exception() const override { return state_->get(); }
  std::vector<at::Tensor> result() override { return outputs_; }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override {
    check_launched();
    return future_;
  }

  bool wait(std::chrono::milliseconds /*timeout: the process group's applies*/) override {
    check_launched();
    rethrow_if_failed();
    end_.block(getCurrentSunriseStream(device_));
    if (blocking_) {
      end_.synchronize();
      rethrow_if_failed();
    }
    return true;
  }
  void synchronize() override { wait(kNoTimeout); }

 private:
  void check_launched() const {
    TORCH_CHECK(future_, "sunrise: this send/recv is part of a coalescing group (batch_isend_irecv) that has not "
                "ended yet; wait on the group's work");
  }
  void rethrow_if_failed() const {
    if (std::exception_ptr error = state_->get()) std::rethrow_exception(error);
  }

  c10::DeviceIndex device_;
  std::vector<at::Tensor> outputs_;
  std::shared_ptr<const CollectiveState> state_;
  bool blocking_;
  SunriseEvent end_;
  c10::intrusive_ptr<c10::ivalue::Future> future_;
};

std::vector<at::Tensor> flat(const std::vector<std::vector<at::Tensor>>& lists) {
  std::vector<at::Tensor> out;
  for (const auto& list : lists) out.insert(out.end(), list.begin(), list.end());
  return out;
}

std::vector<int64_t> lengths(const std::vector<std::vector<at::Tensor>>& lists) {
  std::vector<int64_t> out;
  for (const auto& list : lists) out.push_back(static_cast<int64_t>(list.size()));
  return out;
}

// The inverse of flat(): `views[from...]` cut into lists of `sizes`.
std::vector<std::vector<at::Tensor>> unflat(const std::vector<at::Tensor>& views, size_t from,
                                            const std::vector<int64_t>& sizes) {
  std::vector<std::vector<at::Tensor>> out;
  for (const int64_t n : sizes) {
    out.emplace_back(views.begin() + from, views.begin() + from + n);
    from += n;
  }
  return out;
}

template <typename... Lists>
std::vector<at::Tensor> concat(const std::vector<at::Tensor>& first, const Lists&... rest) {
  std::vector<at::Tensor> out = first;
  (out.insert(out.end(), rest.begin(), rest.end()), ...);
  return out;
}

// PREMUL_SUM (NCCL's; gloo has none): the factor applied to the inputs on
// the device thread, then a SUM. A tensor factor travels as the last view.
bool is_premul_sum(const c10d::ReduceOp& op) { return op.op_ == c10d::ReduceOp::PREMUL_SUM; }

std::vector<at::Tensor> premul_factor_tensors(const c10d::ReduceOp& op) {
  if (!is_premul_sum(op)) return {};
  const auto* supplement = dynamic_cast<const c10d::PreMulSumSupplement*>(op.supplement_.get());
  TORCH_CHECK(supplement != nullptr, "sunrise: ReduceOp.PREMUL_SUM without its factor");
  if (supplement->tensor_factor.defined()) return {supplement->tensor_factor};
  return {};
}

// Scales `inputs[0..count)` by the PREMUL_SUM factor (in place: the inputs of
// allreduce and reduce are their outputs; otherwise into new tensors, leaving
// the caller's inputs alone) and returns the op gloo runs.
c10d::ReduceOp premultiply(const c10d::ReduceOp& op, std::vector<at::Tensor>& inputs, size_t count,
                           const std::vector<at::Tensor>& views, bool in_place) {
  if (!is_premul_sum(op)) return op;
  const auto* supplement = static_cast<const c10d::PreMulSumSupplement*>(op.supplement_.get());
  for (size_t i = 0; i < count; ++i) {
    const bool by_tensor = supplement->tensor_factor.defined();
    if (in_place) {
      by_tensor ? inputs[i].mul_(views.back()) : inputs[i].mul_(supplement->double_factor);
    } else {
      inputs[i] = by_tensor ? inputs[i] * views.back() : inputs[i] * supplement->double_factor;
    }
  }
  return c10d::ReduceOp(c10d::ReduceOp::SUM);
}

// What every rank must agree on before a collective: the op, then the dtype
// and element count of each tensor named (at most kSignatureTensors).
constexpr size_t kSignatureTensors = 3;
// For collectives whose tensors may differ across ranks (uneven all-to-all).
const std::vector<at::Tensor> kNoTensors;

std::vector<int64_t> signature(c10d::OpType type, const std::vector<at::Tensor>& tensors) {
  std::vector<int64_t> sig(1 + 2 * kSignatureTensors, -1);
  sig[0] = static_cast<int64_t>(type);
  for (size_t i = 0; i < tensors.size() && i < kSignatureTensors; ++i) {
    sig[1 + 2 * i] = static_cast<int64_t>(tensors[i].scalar_type());
    sig[2 + 2 * i] = tensors[i].numel();
  }
  return sig;
}

std::string describe_signature(const int64_t* sig) {
  std::string text = c10d::opTypeToString(static_cast<c10d::OpType>(sig[0])) + " (";
  for (size_t i = 0; i < kSignatureTensors && sig[1 + 2 * i] >= 0; ++i) {
    if (i > 0) text += ", ";
    text += std::string(c10::toString(static_cast<c10::ScalarType>(sig[1 + 2 * i]))) + " x " +
            std::to_string(sig[2 + 2 * i]);
  }
  return text + ")";
}

// Compares this rank's signature with every other rank's over `checker`.
void check_ranks_agree(c10d::Backend& checker, const std::vector<int64_t>& sig) {
  at::Tensor mine = at::tensor(sig, at::kLong);
  std::vector<at::Tensor> in{mine};
  std::vector<std::vector<at::Tensor>> all(1);
  for (int r = 0; r < checker.getSize(); ++r) all[0].push_back(at::empty_like(mine));
  checker.allgather(all, in)->wait();
  for (int r = 0; r < checker.getSize(); ++r) {
    if (at::equal(all[0][r], mine)) continue;
    std::string calls;
    for (int q = 0; q < checker.getSize(); ++q) {
      calls += (q > 0 ? "; rank " : "rank ") + std::to_string(q) + ": " +
               describe_signature(all[0][q].const_data_ptr<int64_t>());
    }
    TORCH_CHECK_VALUE(false, "collectives do not match across ranks (", calls,
                      "): every rank must call the same collectives, in the same order, with tensors of the same "
                      "dtype and size");
  }
}

}  // namespace

ProcessGroupSCCL::ProcessGroupSCCL(c10::intrusive_ptr<c10d::Backend> transport,
                                   c10::intrusive_ptr<c10d::Backend> checker, int rank, int size)
    : Backend(rank, size), transport_(std::move(transport)), checker_(std::move(checker)) {
  TORCH_CHECK(transport_, "sunrise: the sccl process group needs a transport backend");
}

SunriseStream ProcessGroupSCCL::comm_stream_for(const std::vector<at::Tensor>& tensors, const char* name) {
  const std::lock_guard<std::mutex> lock(mutex_);
  for (const at::Tensor& t : tensors) {
    TORCH_CHECK_VALUE(t.defined(), "sunrise ", name, ": undefined tensor");
    TORCH_CHECK_VALUE(t.device().is_privateuseone(), "sunrise ", name, ": a tensor on ", t.device(),
                      " in a collective of the sccl backend, which takes sunrise tensors");
    if (!device_) device_ = t.device().index();
    TORCH_CHECK_VALUE(t.device().index() == *device_, "sunrise ", name, ": a tensor on ", t.device(),
                      ", but this process group communicates on sunrise:", *device_,
                      " (one device per process: torch.sunrise.set_device(local_rank), and tensors there)");
    TORCH_CHECK_VALUE(t.is_non_overlapping_and_dense(), "sunrise ", name,
                      ": tensors must be non-overlapping and dense (call .contiguous())");
  }
  // Before the group knows its device (a barrier first), work without tensors
  // runs on a stream of the current device and fixes nothing.
  if (!device_) return getStreamFromPool(/*is_high_priority=*/false, current_device());
  if (!comm_stream_) comm_stream_ = getStreamFromPool(/*is_high_priority=*/false, *device_);
  return *comm_stream_;
}

namespace {

// Records `error` (a collective's failure) for its works and returns it.
std::exception_ptr fail(const std::shared_ptr<CollectiveState>& state, const std::string& name, const char* what) {
  auto error = std::make_exception_ptr(std::runtime_error("sunrise " + name + " failed: " + what));
  const std::lock_guard<std::mutex> lock(state->mutex);
  state->error = error;
  return error;
}

}  // namespace

void ProcessGroupSCCL::run_on_device(const SunriseStream& comm, std::vector<Job> jobs,
                                     std::shared_ptr<CollectiveState> state) {
  // After the work already queued on the caller's stream.
  {
    SunriseEvent queued;
    queued.record(getCurrentSunriseStream(comm.device_index()));
    queued.block(comm);
  }
  launch_task(comm, [transport = transport_, checker = checker_, jobs = std::move(jobs), state = std::move(state)] {
    // Every job's transport operation starts before any is waited for: the
    // sends and receives of a group wait for their peers' counterparts.
    std::vector<kernels::CpuViewSet> sets(jobs.size());
    std::vector<std::vector<at::Tensor>> views(jobs.size());
    std::vector<c10::intrusive_ptr<c10d::Work>> started(jobs.size());
    const std::string* name = nullptr;
    try {
      for (size_t i = 0; i < jobs.size(); ++i) {
        name = &jobs[i].name;
        for (const kernels::DeferredTensor& d : jobs[i].tensors) views[i].push_back(d.view(sets[i]));
        if (jobs[i].signature) check_ranks_agree(*checker, *jobs[i].signature);
        started[i] = jobs[i].body(*transport, views[i]);
      }
      for (size_t i = 0; i < jobs.size(); ++i) {
        name = &jobs[i].name;
        if (started[i]) started[i]->wait();
      }
    } catch (const c10::Error& e) {
      // Also the device's sticky error: the next synchronizing call raises it.
      std::rethrow_exception(fail(state, *name, e.what_without_backtrace()));
    } catch (const std::exception& e) {
      std::rethrow_exception(fail(state, *name, e.what()));
    }
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::launch(c10d::OpType type, const char* name,
                                                        const std::vector<at::Tensor>& tensors,
                                                        std::vector<at::Tensor> outputs, Body body, bool blocking,
                                                        const std::vector<at::Tensor>* agree, bool check) {
  const SunriseStream comm = comm_stream_for(tensors, name);
  Job job{name, {}, std::move(body), std::nullopt};
  if (checker_ && check) job.signature = signature(type, agree != nullptr ? *agree : tensors);
  job.tensors.reserve(tensors.size());
  for (const at::Tensor& t : tensors) job.tensors.emplace_back(t, comm.handle());
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (coalescing_ && !check) {
      // Point-to-point in a group (batch_isend_irecv): runs when the group ends.
      if (!group_work_) {
        group_state_ = std::make_shared<CollectiveState>();
        group_work_ = c10::make_intrusive<WorkSCCL>(getRank(), c10d::OpType::COALESCED, comm.device_index(),
                                                    group_state_, false);
      }
      static_cast<WorkSCCL&>(*group_work_).add_outputs(outputs);
      group_jobs_.push_back(std::move(job));
      return group_work_;
    }
  }
  auto state = std::make_shared<CollectiveState>();
  std::vector<Job> jobs;
  jobs.push_back(std::move(job));
  run_on_device(comm, std::move(jobs), state);
  auto work = c10::make_intrusive<WorkSCCL>(getRank(), type, comm.device_index(), std::move(state), blocking);
  work->add_outputs(outputs);
  work->launched(comm);
  return work;
}

void ProcessGroupSCCL::startCoalescing() {
  const std::lock_guard<std::mutex> lock(mutex_);
  coalescing_ = true;
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::endCoalescing() {
  std::vector<Job> jobs;
  c10::intrusive_ptr<c10d::Work> work;
  std::shared_ptr<CollectiveState> state;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    coalescing_ = false;
    jobs = std::exchange(group_jobs_, {});
    work = std::exchange(group_work_, {});
    state = std::exchange(group_state_, {});
  }
  const SunriseStream comm = comm_stream_for({}, "coalesced");
  if (!work) {
    // The group's collectives were queued one by one, in order: it ends with the last.
    state = std::make_shared<CollectiveState>();
    work = c10::make_intrusive<WorkSCCL>(getRank(), c10d::OpType::COALESCED, comm.device_index(), state, false);
  } else {
    run_on_device(comm, std::move(jobs), state);
  }
  static_cast<WorkSCCL&>(*work).launched(comm);
  return work;
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::broadcast(std::vector<at::Tensor>& tensors,
                                                           const c10d::BroadcastOptions& opts) {
  TORCH_CHECK_VALUE(tensors.size() == 1, "sunrise broadcast: one tensor per process (got ", tensors.size(), ")");
  return launch(c10d::OpType::BROADCAST, "broadcast", tensors, tensors,
                [opts](c10d::Backend& t, std::vector<at::Tensor>& v) { return t.broadcast(v, opts); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::allreduce(std::vector<at::Tensor>& tensors,
                                                           const c10d::AllreduceOptions& opts) {
  TORCH_CHECK_VALUE(tensors.size() == 1, "sunrise allreduce: one tensor per process (got ", tensors.size(), ")");
  return allreduce_each(c10d::OpType::ALLREDUCE, "allreduce", tensors, opts.reduceOp, opts.timeout);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                                     const c10d::AllreduceCoalescedOptions& opts) {
  return allreduce_each(c10d::OpType::ALLREDUCE_COALESCED, "allreduce_coalesced", tensors, opts.reduceOp,
                        opts.timeout);
}

// gloo's allreduce of several tensors reduces them into one another too (one
// tensor per local device); coalesced tensors are reduced one by one, in one task.
c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::allreduce_each(c10d::OpType type, const char* name,
                                                                std::vector<at::Tensor>& tensors,
                                                                const c10d::ReduceOp& op,
                                                                std::chrono::milliseconds timeout) {
  const size_t n = tensors.size();
  return launch(type, name, concat(tensors, premul_factor_tensors(op)), tensors,
                [op, timeout, n](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> data(v.begin(), v.begin() + n);
                  c10d::AllreduceOptions o;
                  o.timeout = timeout;
                  o.reduceOp = premultiply(op, data, n, v, /*in_place=*/true);
                  for (at::Tensor& tensor : data) {
                    std::vector<at::Tensor> one{tensor};
                    t.allreduce(one, o)->wait();
                  }
                  return nullptr;
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::reduce(std::vector<at::Tensor>& tensors,
                                                        const c10d::ReduceOptions& opts) {
  TORCH_CHECK_VALUE(tensors.size() == 1, "sunrise reduce: one tensor per process (got ", tensors.size(), ")");
  const size_t n = tensors.size();
  return launch(c10d::OpType::REDUCE, "reduce", concat(tensors, premul_factor_tensors(opts.reduceOp)), tensors,
                [opts, n, root = getRank() == opts.rootRank](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> data(v.begin(), v.begin() + n);
                  c10d::ReduceOptions o = opts;
                  // The root's tensor receives the result; the others' inputs stay as they were.
                  o.reduceOp = premultiply(opts.reduceOp, data, n, v, /*in_place=*/root);
                  return t.reduce(data, o);
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                                           std::vector<at::Tensor>& inputs,
                                                           const c10d::AllgatherOptions& opts) {
  const size_t n = inputs.size();
  const std::vector<int64_t> sizes = lengths(outputs);
  return launch(c10d::OpType::ALLGATHER, "allgather", concat(inputs, flat(outputs)), flat(outputs),
                [opts, n, sizes](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> in(v.begin(), v.begin() + n);
                  auto out = unflat(v, n, sizes);
                  return t.allgather(out, in, opts);
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::_allgather_base(at::Tensor& output, at::Tensor& input,
                                                                 const c10d::AllgatherOptions& opts) {
  return launch(c10d::OpType::_ALLGATHER_BASE, "all_gather_into_tensor", {output, input}, {output},
                [opts](c10d::Backend& t, std::vector<at::Tensor>& v) { return t._allgather_base(v[0], v[1], opts); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::allgather_coalesced(std::vector<std::vector<at::Tensor>>& outputs,
                                                                     std::vector<at::Tensor>& inputs,
                                                                     const c10d::AllgatherOptions& opts) {
  const size_t n = inputs.size();
  const std::vector<int64_t> sizes = lengths(outputs);
  return launch(c10d::OpType::ALLGATHER_COALESCED, "allgather_coalesced", concat(inputs, flat(outputs)),
                flat(outputs), [opts, n, sizes](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> in(v.begin(), v.begin() + n);
                  auto out = unflat(v, n, sizes);
                  return t.allgather_coalesced(out, in, opts);
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::allgather_into_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                                 std::vector<at::Tensor>& inputs,
                                                                                 const c10d::AllgatherOptions& opts) {
  TORCH_CHECK_VALUE(outputs.size() == inputs.size(), "sunrise allgather_into_tensor_coalesced: ", outputs.size(),
                    " outputs for ", inputs.size(), " inputs");
  const size_t n = outputs.size();
  return launch(c10d::OpType::COALESCED, "allgather_into_tensor_coalesced", concat(outputs, inputs), outputs,
                [opts, n](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  for (size_t i = 0; i < n; ++i) t._allgather_base(v[i], v[n + i], opts)->wait();
                  return nullptr;
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::gather(std::vector<std::vector<at::Tensor>>& outputs,
                                                        std::vector<at::Tensor>& inputs,
                                                        const c10d::GatherOptions& opts) {
  const size_t n = inputs.size();
  const std::vector<int64_t> sizes = lengths(outputs);
  return launch(c10d::OpType::GATHER, "gather", concat(inputs, flat(outputs)), flat(outputs),
                [opts, n, sizes](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> in(v.begin(), v.begin() + n);
                  auto out = unflat(v, n, sizes);
                  return t.gather(out, in, opts);
                },
                false, &inputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::scatter(std::vector<at::Tensor>& outputs,
                                                         std::vector<std::vector<at::Tensor>>& inputs,
                                                         const c10d::ScatterOptions& opts) {
  const size_t n = outputs.size();
  const std::vector<int64_t> sizes = lengths(inputs);
  return launch(c10d::OpType::SCATTER, "scatter", concat(outputs, flat(inputs)), outputs,
                [opts, n, sizes](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> out(v.begin(), v.begin() + n);
                  auto in = unflat(v, n, sizes);
                  return t.scatter(out, in, opts);
                },
                false, &outputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::reduce_scatter(std::vector<at::Tensor>& outputs,
                                                                std::vector<std::vector<at::Tensor>>& inputs,
                                                                const c10d::ReduceScatterOptions& opts) {
  const size_t n = outputs.size();
  const std::vector<int64_t> sizes = lengths(inputs);
  return launch(c10d::OpType::REDUCE_SCATTER, "reduce_scatter",
                concat(outputs, flat(inputs), premul_factor_tensors(opts.reduceOp)), outputs,
                [opts, n, sizes](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> out(v.begin(), v.begin() + n);
                  auto in = unflat(v, n, sizes);
                  c10d::ReduceScatterOptions o = opts;
                  for (auto& list : in) o.reduceOp = premultiply(opts.reduceOp, list, list.size(), v, false);
                  return t.reduce_scatter(out, in, o);
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::_reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                                      const c10d::ReduceScatterOptions& opts) {
  return launch(c10d::OpType::_REDUCE_SCATTER_BASE, "reduce_scatter_tensor",
                concat({output, input}, premul_factor_tensors(opts.reduceOp)), {output},
                [opts](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> in{v[1]};
                  c10d::ReduceScatterOptions o = opts;
                  o.reduceOp = premultiply(opts.reduceOp, in, 1, v, /*in_place=*/false);
                  return t._reduce_scatter_base(v[0], in[0], o);
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::reduce_scatter_tensor_coalesced(
    std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs, const c10d::ReduceScatterOptions& opts) {
  TORCH_CHECK_VALUE(outputs.size() == inputs.size(), "sunrise reduce_scatter_tensor_coalesced: ", outputs.size(),
                    " outputs for ", inputs.size(), " inputs");
  const size_t n = outputs.size();
  return launch(c10d::OpType::COALESCED, "reduce_scatter_tensor_coalesced",
                concat(outputs, inputs, premul_factor_tensors(opts.reduceOp)), outputs,
                [opts, n](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> in(v.begin() + n, v.begin() + 2 * n);
                  c10d::ReduceScatterOptions o = opts;
                  o.reduceOp = premultiply(opts.reduceOp, in, n, v, /*in_place=*/false);
                  for (size_t i = 0; i < n; ++i) t._reduce_scatter_base(v[i], in[i], o)->wait();
                  return nullptr;
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::alltoall_base(at::Tensor& output, at::Tensor& input,
                                                               std::vector<int64_t>& output_split_sizes,
                                                               std::vector<int64_t>& input_split_sizes,
                                                               const c10d::AllToAllOptions& opts) {
  return launch(c10d::OpType::ALLTOALL_BASE, "all_to_all_single", {output, input}, {output},
                [opts, out_splits = output_split_sizes, in_splits = input_split_sizes](
                    c10d::Backend& t, std::vector<at::Tensor>& v) mutable {
                  return t.alltoall_base(v[0], v[1], out_splits, in_splits, opts);
                },
                false, &kNoTensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::alltoall(std::vector<at::Tensor>& outputs,
                                                          std::vector<at::Tensor>& inputs,
                                                          const c10d::AllToAllOptions& opts) {
  const size_t n = outputs.size();
  return launch(c10d::OpType::ALLTOALL, "all_to_all", concat(outputs, inputs), outputs,
                [opts, n](c10d::Backend& t, std::vector<at::Tensor>& v) {
                  std::vector<at::Tensor> out(v.begin(), v.begin() + n);
                  std::vector<at::Tensor> in(v.begin() + n, v.end());
                  return t.alltoall(out, in, opts);
                },
                false, &kNoTensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::send(std::vector<at::Tensor>& tensors, int dst_rank, int tag) {
  return launch(c10d::OpType::SEND, "send", tensors, tensors,
                [dst_rank, tag](c10d::Backend& t, std::vector<at::Tensor>& v) { return t.send(v, dst_rank, tag); },
                false, nullptr, /*check=*/false);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::recv(std::vector<at::Tensor>& tensors, int src_rank, int tag) {
  return launch(c10d::OpType::RECV, "recv", tensors, tensors,
                [src_rank, tag](c10d::Backend& t, std::vector<at::Tensor>& v) { return t.recv(v, src_rank, tag); },
                false, nullptr, /*check=*/false);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupSCCL::barrier(const c10d::BarrierOptions& opts) {
  // The host waits for a barrier, as for NCCL's.
  return launch(c10d::OpType::BARRIER, "barrier", {}, {},
                [opts](c10d::Backend& t, std::vector<at::Tensor>&) { return t.barrier(opts); }, /*blocking=*/true);
}

}  // namespace torch_sunrise::distributed
