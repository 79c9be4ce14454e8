// The c10d backend for sunrise tensors ("sccl", as NCCL is CUDA's).
//
// Collectives have NCCL's stream semantics: each is queued on the process
// group's communication stream after the work already queued on the caller's
// current stream; Work::wait() makes the current stream wait for it (the host
// does not block, except for barrier); its future is a device future
// completed on the communication stream. The bytes move through a gloo
// backend over the same store (TCP), which the device thread drives over CPU
// views of device memory: the emulated device's memory is host memory, so
// nothing is staged through extra copies.
#pragma once

#include "kernels/CpuViews.h"

#include <torch_sunrise/SunriseStream.h>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace torch_sunrise::distributed {

struct CollectiveState;

class ProcessGroupSCCL final : public c10d::Backend {
 public:
  // `transport`: a gloo backend of the same ranks over the same store;
  // `checker`, another (may be null): before each collective the ranks compare
  // what they are about to do (op, dtype, sizes) over it, so a mismatch is a
  // clear error rather than gloo aborting the process. The
  // device is that of the first collective's tensors (as NCCL makes its
  // communicator for the device it is first used on); later collectives
  // must use the same one.
  ProcessGroupSCCL(c10::intrusive_ptr<c10d::Backend> transport, c10::intrusive_ptr<c10d::Backend> checker, int rank,
                   int size);

  const std::string getBackendName() const override { return "sccl"; }
  bool supportsCoalescing() const override { return true; }
  void startCoalescing() override;
  c10::intrusive_ptr<c10d::Work> endCoalescing() override;

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                           const c10d::BroadcastOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                     const c10d::AllreduceCoalescedOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor>& tensors, const c10d::ReduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                           std::vector<at::Tensor>& inputs,
                                           const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather_coalesced(std::vector<std::vector<at::Tensor>>& outputs,
                                                     std::vector<at::Tensor>& inputs,
                                                     const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather_into_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                 std::vector<at::Tensor>& inputs,
                                                                 const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
                                        const c10d::GatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> scatter(std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
                                         const c10d::ScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce_scatter(std::vector<at::Tensor>& outputs,
                                                std::vector<std::vector<at::Tensor>>& inputs,
                                                const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                      const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce_scatter_tensor_coalesced(std::vector<at::Tensor>& outputs,
                                                                 std::vector<at::Tensor>& inputs,
                                                                 const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                               std::vector<int64_t>& output_split_sizes,
                                               std::vector<int64_t>& input_split_sizes,
                                               const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall(std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
                                          const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor>& tensors, int dst_rank, int tag) override;
  c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor>& tensors, int src_rank, int tag) override;
  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions& opts) override;

 private:
  // Runs `body(transport, views of tensors)` on the communication stream,
  // after the current stream's queued work; `outputs` are the Work's result.
  // `agree`: the tensors whose dtype and sizes every rank must match (null:
  // all of `tensors`; empty: the op alone). `check`: false for point-to-point
  // ops, which do not involve every rank.
  // A body starts its transport operation and returns it (or waits itself and
  // returns null); the task waits for it.
  using Body =
      std::function<c10::intrusive_ptr<c10d::Work>(c10d::Backend& transport, std::vector<at::Tensor>& views)>;
  c10::intrusive_ptr<c10d::Work> launch(c10d::OpType type, const char* name, const std::vector<at::Tensor>& tensors,
                                        std::vector<at::Tensor> outputs, Body body, bool blocking = false,
                                        const std::vector<at::Tensor>* agree = nullptr, bool check = true);
  c10::intrusive_ptr<c10d::Work> allreduce_each(c10d::OpType type, const char* name, std::vector<at::Tensor>& tensors,
                                                const c10d::ReduceOp& op, std::chrono::milliseconds timeout);
  // A collective to run on the device: its tensors as they are at launch, its
  // transport operation, and what the ranks must agree on first.
  struct Job {
    std::string name;
    std::vector<kernels::DeferredTensor> tensors;
    Body body;
    std::optional<std::vector<int64_t>> signature;
  };
  // Queues one task on `comm`, after the current stream's work, that runs `jobs`.
  void run_on_device(const SunriseStream& comm, std::vector<Job> jobs, std::shared_ptr<CollectiveState> state);
  // Checks the tensors; returns the communication stream of their device.
  SunriseStream comm_stream_for(const std::vector<at::Tensor>& tensors, const char* name);

  c10::intrusive_ptr<c10d::Backend> transport_;
  c10::intrusive_ptr<c10d::Backend> checker_;
  std::mutex mutex_;  // device_ and comm_stream_: DDP's collectives come from autograd's thread
  std::optional<c10::DeviceIndex> device_;
  std::optional<SunriseStream> comm_stream_;
  // Under mutex_: a coalescing group, and its deferred point-to-point jobs.
  bool coalescing_ = false;
  std::vector<Job> group_jobs_;
  c10::intrusive_ptr<c10d::Work> group_work_;
  std::shared_ptr<CollectiveState> group_state_;
};

}  // namespace torch_sunrise::distributed
