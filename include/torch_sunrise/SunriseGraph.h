// SunriseGraph: capture a stream's work once, replay it with one launch, as
// at::cuda::CUDAGraph does. Registered as the PrivateUse1 implementation of
// at::GraphImplInterface, so torch.accelerator.Graph uses it; torch.sunrise's
// SunriseGraph, graph() and make_graphed_callables are built on it.
//
// What a capture keeps: the runtime's graph of the captured launches, the
// host tasks they run (replayed, destroyed with the graph), a private memory
// pool for what was allocated during capture (see the caching allocator),
// and, per registered generator, a cell from which captured random ops read
// the seed and offset of the running replay.
#pragma once

#include <torch_sunrise/SunriseMacros.h>

#include <torch_sunrise/SunriseEvent.h>
#include <torch_sunrise/SunriseLaunch.h>
#include <torch_sunrise/SunriseStream.h>

#include <ATen/core/Generator.h>
#include <ATen/core/GraphImplInterface.h>

#include <sunrise_rt.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace torch_sunrise {

class TORCH_SUNRISE_API SunriseGraph final : public at::GraphImplInterface {
 public:
  explicit SunriseGraph(const at::GraphImplArgs& args = {});
  ~SunriseGraph() override;
  SunriseGraph(const SunriseGraph&) = delete;
  SunriseGraph& operator=(const SunriseGraph&) = delete;

  // Captures the current stream of the current device. `pool` {0, 0}: a pool
  // of the graph's own; another graph's pool() or graph_pool_handle() to share.
  void capture_begin(c10::MempoolId_t pool = {0, 0},
                     at::GraphCaptureMode capture_mode = at::GraphCaptureMode::Default) override;
  void capture_end() override;
  void instantiate() override;
  // Launches the graph on the current stream of the graph's device.
  void replay() override;
  // Releases the graph; in the middle of a capture, ends it and drops what it recorded.
  void reset() override;
  c10::MempoolId_t pool() const override;
  // Keeps the captured graph after instantiation, for debug_dump.
  void enable_debug_mode() override;
  // Writes the captured graph as a Graphviz file.
  void debug_dump(const std::string& path) override;

  // Random ops drawing from `generator` during capture draw fresh numbers on
  // every replay. The capturing device's default generator is registered by
  // capture_begin; others must be registered before it.
  void register_generator_state(const at::Generator& generator);
  // Launches recorded by the capture (0 before one).
  size_t node_count() const { return node_count_; }

 private:
  struct GeneratorCell;
  // Undoes capture_begin's setup once the runtime's capture has ended.
  void capture_ended(unsigned long long id) noexcept;
  void release() noexcept;

  bool keep_graph_ = false;
  bool debug_ = false;
  bool capturing_ = false;
  bool has_graph_ = false;
  c10::DeviceIndex device_ = -1;
  std::optional<SunriseStream> capture_stream_;
  std::optional<SunriseStream> last_replay_stream_;
  SunriseEvent replayed_;  // the last replay that drew random numbers
  // Shared with the allocator's test for the capture's streams, which may
  // outlive a failed capture_begin.
  std::shared_ptr<std::atomic<unsigned long long>> capture_id_;
  c10::MempoolId_t mempool_id_{0, 0};
  bool holds_pool_ = false;
  srGraph_t graph_ = nullptr;
  srGraphExec_t exec_ = nullptr;
  size_t node_count_ = 0;
  std::vector<std::unique_ptr<detail::HostTask>> tasks_;
  std::vector<std::unique_ptr<GeneratorCell>> generators_;
};

// True on a device thread while it runs a graph's replay. The host has then
// issued one launch and waits, so the device may use both cores for work
// that a busy host would compete for (DeviceParallelism's split_matvec).
TORCH_SUNRISE_API bool replaying_graph() noexcept;

// A pool id for graphs to share (torch.cuda.graph_pool_handle's).
TORCH_SUNRISE_API c10::MempoolId_t graph_pool_handle();

// Raises when `stream` captures: `what` waits for the device or reads device
// data on the host, which a capture cannot do. The capture is invalidated, as
// the runtime invalidates a capture that makes such a call. `remedy` says what
// to do instead. Ops call it through before_host_wait (SunriseHostWait.h).
TORCH_SUNRISE_API void raise_if_capturing(const SunriseStream& stream, const char* what, const char* remedy);

}  // namespace torch_sunrise
