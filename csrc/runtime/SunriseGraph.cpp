#include <torch_sunrise/SunriseGraph.h>

#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGenerator.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseHostAllocator.h>

#include <algorithm>
#include <mutex>
#include <sstream>
#include <unordered_map>

namespace torch_sunrise {

namespace detail {
std::atomic<int> g_captures_underway{0};
}  // namespace detail

namespace {

// Tasks launched on capturing streams, by capture, until capture_end hands
// them to their graph.
std::mutex g_captured_mutex;
std::unordered_map<unsigned long long, std::vector<std::unique_ptr<detail::HostTask>>>& captured_tasks() {
  static auto& m = *std::make_unique<std::unordered_map<unsigned long long, std::vector<std::unique_ptr<detail::HostTask>>>>()
                        .release();
  return m;
}

std::vector<std::unique_ptr<detail::HostTask>> take_captured_tasks(unsigned long long capture_id) {
  std::lock_guard<std::mutex> lock(g_captured_mutex);
  auto it = captured_tasks().find(capture_id);
  if (it == captured_tasks().end()) return {};
  auto tasks = std::move(it->second);
  captured_tasks().erase(it);
  return tasks;
}

thread_local bool t_replaying = false;

struct ReplayingScope {
  ReplayingScope() { t_replaying = true; }
  ~ReplayingScope() { t_replaying = false; }
  ReplayingScope(const ReplayingScope&) = delete;
  ReplayingScope& operator=(const ReplayingScope&) = delete;
};

// A replayed task is neither retired (the graph owns it) nor waited for: its
// errors are the device's asynchronous errors, as a kernel's are.
void run_captured_task(void* user_data) {
  auto* task = static_cast<detail::HostTask*>(user_data);
  const ReplayingScope replaying;
  try {
    task->run();
  } catch (...) {
    detail::report_async_exception(std::current_exception(), "device task");
  }
}

// Why a capture was invalidated by raise_if_capturing, for capture_end's
// error (the runtime only knows that a stream was queried).
std::unordered_map<unsigned long long, std::string>& invalidation_reasons() {
  static auto& m = *std::make_unique<std::unordered_map<unsigned long long, std::string>>().release();
  return m;
}

std::string take_invalidation_reason(unsigned long long capture_id) {
  std::lock_guard<std::mutex> lock(g_captured_mutex);
  auto it = invalidation_reasons().find(capture_id);
  if (it == invalidation_reasons().end()) return {};
  std::string reason = std::move(it->second);
  invalidation_reasons().erase(it);
  return reason;
}

std::atomic<uint64_t> g_next_pool_uid{1};

srStreamCaptureMode runtime_mode(at::GraphCaptureMode mode) {
  switch (mode) {
    case at::GraphCaptureMode::ThreadLocal:
      return srStreamCaptureModeThreadLocal;
    case at::GraphCaptureMode::Relaxed:
      return srStreamCaptureModeRelaxed;
    case at::GraphCaptureMode::Default:  // CUDA's default too
    case at::GraphCaptureMode::Global:
      break;
  }
  return srStreamCaptureModeGlobal;
}

// SunriseStream::capture_id for the allocator's test of a stream, which gets a
// raw handle and must not throw under the allocator's lock.
unsigned long long capture_id_of(srStream_t stream) {
  srStreamCaptureStatus status = srStreamCaptureStatusNone;
  unsigned long long id = 0;
  if (srStreamGetCaptureInfo(stream, &status, &id) != srSuccess || status == srStreamCaptureStatusNone) return 0;
  return id;
}

}  // namespace

namespace detail {

void launch_task_maybe_captured(const SunriseStream& stream, std::unique_ptr<HostTask> task) {
  const unsigned long long id = stream.capture_id();
  if (id == 0) {
    SUNRISE_CHECK(srLaunchHostFunc(stream.handle(), &run_host_task, task.get()));
    task.release();  // now owned by the queued host function
    return;
  }
  task->call_result.reset();
  SUNRISE_CHECK(srLaunchHostFunc(stream.handle(), &run_captured_task, task.get()));
  std::lock_guard<std::mutex> lock(g_captured_mutex);
  captured_tasks()[id].push_back(std::move(task));
}

}  // namespace detail

struct SunriseGraph::GeneratorCell {
  explicit GeneratorCell(at::Generator gen) : generator(std::move(gen)) {}
  at::Generator generator;
  // {seed, offset} of the replay that runs. Shared with the queued task that
  // writes it, which may outlive the graph when a launch failed after it.
  std::shared_ptr<uint64_t[]> cell = std::make_shared<uint64_t[]>(2);
  uint64_t increment = 0;  // values one replay consumes
};

SunriseGraph::SunriseGraph(const at::GraphImplArgs& args) : keep_graph_(args.keep_graph) {}

SunriseGraph::~SunriseGraph() { release(); }

void SunriseGraph::register_generator_state(const at::Generator& generator) {
  TORCH_CHECK(!capturing_, "SunriseGraph: register generators before the capture begins");
  TORCH_CHECK(generator.defined() && generator.device().is_privateuseone(),
              "SunriseGraph: register_generator_state expects a sunrise generator, got one of device ",
              generator.defined() ? generator.device().str() : std::string("(undefined)"));
  for (const auto& g : generators_)
    if (g->generator == generator) return;
  generators_.push_back(std::make_unique<GeneratorCell>(generator));
}

void SunriseGraph::capture_begin(c10::MempoolId_t pool, at::GraphCaptureMode capture_mode) {
  TORCH_CHECK(!capturing_, "SunriseGraph: capture_begin was called while this graph is capturing");
  TORCH_CHECK(!has_graph_, "SunriseGraph: this graph already holds a capture; call reset() before capturing again");
  device_ = current_device();
  const SunriseStream stream = getCurrentSunriseStream(device_);
  register_generator_state(getDefaultSunriseGenerator(device_));
  mempool_id_ = (pool.first != 0 || pool.second != 0)
                    ? pool
                    : c10::MempoolId_t{g_next_pool_uid.fetch_add(1, std::memory_order_relaxed), 0};
  // Memory that finished work still holds goes back to the ordinary pools
  // now: freed during the capture, it would be deferred.
  release_finished_tasks();
  capture_id_ = std::make_shared<std::atomic<unsigned long long>>(0);
  // Counted first: the allocator defers what a capture forbids from here on.
  detail::g_captures_underway.fetch_add(1, std::memory_order_relaxed);
  // The pool is set up before the capture begins, so that no allocation on the
  // stream can slip between the two into an ordinary pool.
  try {
    caching_allocator::beginAllocateToPool(device_, mempool_id_, [id = capture_id_](srStream_t s) {
      const unsigned long long want = id->load(std::memory_order_acquire);
      return want != 0 && capture_id_of(s) == want;
    });
    try {
      // Pinned memory allocated during the capture stays the graph's too: its
      // replays copy from and to it.
      getCachingHostAllocator()->begin_allocate_to_pool(mempool_id_, [id = capture_id_](c10::Stream s) {
        const unsigned long long want = id->load(std::memory_order_acquire);
        return want != 0 && SunriseStream(s).capture_id() == want;
      });
    } catch (...) {
      caching_allocator::endAllocateToPool(device_, mempool_id_);
      caching_allocator::releasePool(device_, mempool_id_);
      throw;
    }
  } catch (...) {
    detail::g_captures_underway.fetch_sub(1, std::memory_order_relaxed);
    throw;
  }
  holds_pool_ = true;
  try {
    SUNRISE_CHECK(srStreamBeginCapture(stream.handle(), runtime_mode(capture_mode)));
  } catch (...) {
    const std::exception_ptr error = std::current_exception();
    detail::g_captures_underway.fetch_sub(1, std::memory_order_relaxed);
    caching_allocator::endAllocateToPool(device_, mempool_id_);
    getCachingHostAllocator()->end_allocate_to_pool(mempool_id_);
    release();
    std::rethrow_exception(error);
  }
  const unsigned long long id = stream.capture_id();
  capture_id_->store(id, std::memory_order_release);
  for (const auto& g : generators_) g->generator.get<SunriseGeneratorImpl>()->capture_prologue(id, g->cell.get());
  capture_stream_ = stream;
  capturing_ = true;
}

void SunriseGraph::capture_end() {
  TORCH_CHECK(capturing_, "SunriseGraph: capture_end was called without capture_begin");
  const SunriseStream stream = getCurrentSunriseStream(device_);
  TORCH_CHECK(stream == *capture_stream_, "SunriseGraph: capture must end on the stream it began on (",
              capture_stream_->unwrap(), "), but the current stream is ", stream.unwrap());
  srGraph_t graph = nullptr;
  // The runtime's detail is read when the error is built: later calls clear it.
  std::exception_ptr error;
  srError_t err = srSuccess;
  try {
    err = srStreamEndCapture(stream.handle(), &graph);
    SUNRISE_CHECK(err);
  } catch (...) {
    error = std::current_exception();
  }
  const unsigned long long id = capture_id_->load(std::memory_order_acquire);
  // Refused without ending the capture (another thread, say): it goes on.
  if (error && stream.capture_id() == id) std::rethrow_exception(error);
  const std::string invalidated_by = take_invalidation_reason(id);
  if (err == srErrorStreamCaptureInvalidated && !invalidated_by.empty()) {
    error = std::make_exception_ptr(c10::AcceleratorError(
        {__func__, __FILE__, static_cast<uint32_t>(__LINE__)}, static_cast<int32_t>(err),
        "SunriseGraph: the capture was invalidated by an earlier error, so there is no graph to replay: " +
            invalidated_by));
  }
  capture_ended(id);
  if (error) {
    release();
    std::rethrow_exception(error);
  }
  graph_ = graph;
  has_graph_ = true;
  SUNRISE_CHECK(srGraphGetNodeCount(graph_, &node_count_));
  if (!keep_graph_) {
    instantiate();
    if (!debug_) {
      SUNRISE_CHECK(srGraphDestroy(graph_));
      graph_ = nullptr;
    }
  }
}

void SunriseGraph::capture_ended(unsigned long long id) noexcept {
  capturing_ = false;
  detail::g_captures_underway.fetch_sub(1, std::memory_order_relaxed);
  try {
    caching_allocator::endAllocateToPool(device_, mempool_id_);
    getCachingHostAllocator()->end_allocate_to_pool(mempool_id_);
  } catch (const std::exception& e) {
    TORCH_WARN("SunriseGraph: ending the capture's memory pool failed: ", e.what());
  }
  tasks_ = take_captured_tasks(id);
  for (const auto& g : generators_) g->increment = g->generator.get<SunriseGeneratorImpl>()->capture_epilogue(id);
}

void SunriseGraph::instantiate() {
  TORCH_CHECK(has_graph_, "SunriseGraph: instantiate was called before a capture ended");
  TORCH_CHECK(graph_ != nullptr, "SunriseGraph: the captured graph was not kept (keep_graph=False) and is "
              "already instantiated");
  if (exec_ != nullptr) {
    SUNRISE_CHECK(srGraphExecDestroy(exec_));
    exec_ = nullptr;
  }
  SUNRISE_CHECK(srGraphInstantiate(&exec_, graph_));
}

void SunriseGraph::replay() {
  TORCH_CHECK(has_graph_, "SunriseGraph: replay was called before a capture ended");
  if (exec_ == nullptr) instantiate();
  const SunriseGuard guard(device_);
  const SunriseStream stream = getCurrentSunriseStream(device_);
  TORCH_CHECK(!stream.is_capturing(), "SunriseGraph: replaying a graph inside a capture is not supported; replay it "
              "outside the captured region");
  // A failed earlier launch fails this one too: raise before reserving random numbers for it.
  SUNRISE_CHECK(srPeekAtLastError());
  // A generator's cell is written in stream order before the graph reads it;
  // a replay on another stream than the last one first waits for that one,
  // which may still read the cell.
  const bool draws = std::any_of(generators_.begin(), generators_.end(), [](const auto& g) { return g->increment > 0; });
  if (draws && last_replay_stream_ && *last_replay_stream_ != stream) replayed_.block(stream);
  for (const auto& g : generators_) {
    if (g->increment == 0) continue;
    const auto [seed, offset] = g->generator.get<SunriseGeneratorImpl>()->replay_prologue(g->increment);
    launch_task(stream, [cell = g->cell, seed, offset] {
      cell[0] = seed;
      cell[1] = offset;
    });
  }
  SUNRISE_CHECK(srGraphLaunch(exec_, stream.handle()));
  if (draws) replayed_.record(stream);
  last_replay_stream_ = stream;
}

void SunriseGraph::reset() { release(); }

void SunriseGraph::release() noexcept {
  if (capturing_) {
    // Reset (or destroyed) in the middle of a capture: it ends here, from
    // whichever thread, and what it recorded is dropped.
    const unsigned long long id = capture_id_->load(std::memory_order_acquire);
    SUNRISE_WARN(srStreamAbortCapture(capture_stream_->handle()));
    take_invalidation_reason(id);
    capture_ended(id);
  }
  // Replays still queued finish first: srGraphExecDestroy waits for them.
  if (exec_ != nullptr) SUNRISE_WARN(srGraphExecDestroy(exec_));
  if (graph_ != nullptr) SUNRISE_WARN(srGraphDestroy(graph_));
  exec_ = nullptr;
  graph_ = nullptr;
  // The tasks hold tensors: freed now, they return to the graph's pool, whose
  // memory then goes back to the ordinary pools.
  tasks_.clear();
  for (const auto& g : generators_) g->increment = 0;
  if (holds_pool_) {
    try {
      caching_allocator::releasePool(device_, mempool_id_);
      getCachingHostAllocator()->release_pool(mempool_id_);
    } catch (const std::exception& e) {
      TORCH_WARN("SunriseGraph: releasing the graph's memory pool failed: ", e.what());
    }
    holds_pool_ = false;
  }
  has_graph_ = false;
  node_count_ = 0;
  last_replay_stream_.reset();
}

c10::MempoolId_t SunriseGraph::pool() const { return mempool_id_; }

void SunriseGraph::enable_debug_mode() { debug_ = true; }

void SunriseGraph::debug_dump(const std::string& path) {
  TORCH_CHECK(graph_ != nullptr, "SunriseGraph: debug_dump needs the captured graph: call enable_debug_mode() "
              "before capture_end, or capture with keep_graph=True");
  SUNRISE_CHECK(srGraphDebugDotPrint(graph_, path.c_str()));
}

bool replaying_graph() noexcept { return t_replaying; }

c10::MempoolId_t graph_pool_handle() { return {0, g_next_pool_uid.fetch_add(1, std::memory_order_relaxed)}; }

void raise_if_capturing(const SunriseStream& stream, const char* what, const char* remedy) {
  const unsigned long long id = stream.capture_id();
  if (id == 0) return;
  // Querying a capturing stream is what the runtime refuses, invalidating the
  // capture: a graph missing this op must not be replayed as if complete.
  (void)srStreamQuery(stream.handle());
  std::ostringstream msg;
  msg << "sunrise: " << what << " cannot be captured: " << stream.device()
      << "'s current stream is capturing a graph, whose work is recorded, not run; " << remedy
      << ". The capture is invalidated.";
  {
    std::lock_guard<std::mutex> lock(g_captured_mutex);
    invalidation_reasons().emplace(id, msg.str());
  }
  throw c10::AcceleratorError({__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
                              static_cast<int32_t>(srErrorStreamCaptureUnsupported), msg.str());
}

}  // namespace torch_sunrise

// The registry's key is DeviceTypeName(PrivateUse1, /*lower_case=*/false):
// the backend's name upper-cased. The registerer lives in namespace at.
namespace at {
REGISTER_GRAPH_IMPL(SUNRISE, torch_sunrise::SunriseGraph);
}  // namespace at
