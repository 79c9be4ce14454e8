// Streams: one device thread per stream drains an in-order queue of tasks.
//
// The queue (see srStream in internal.h) is a chain of segments of slots:
// host threads fill slots under a lock of their own side, the device thread
// watches the next slot's flag and never takes a lock while work arrives.
//
// The thread is started on the first submission (a device has dozens of pooled
// streams, most never used). After the queue runs dry it spins for
// SUNRISE_SPIN_US before sleeping, so that a host issuing a chain of small ops
// never pays a wake-up per op.
#include "compute_pool.h"
#include "internal.h"

#include <cstring>
#include <system_error>

namespace sunrise_rt {

extern thread_local KernelJob* t_current_job;
extern thread_local int t_executing_device;

namespace {

// Streams are never freed: a destroyed handle must stay readable so that
// using it afterwards reports srErrorInvalidResourceHandle instead of crashing.
std::mutex g_graveyard_mutex;
std::vector<std::unique_ptr<srStream>>& all_streams() {
  static auto& v = *std::make_unique<std::vector<std::unique_ptr<srStream>>>().release();
  return v;
}

HandleRegistry<srStream>& stream_registry() {
  static auto& r = *std::make_unique<HandleRegistry<srStream>>().release();
  return r;
}

std::atomic<srSleepHook_t> g_sleep_hook{nullptr};

// The sleep hook releases the sleeping thread's OpenMP team, and a released
// team costs its next parallel region 7-15 ms on the 2-core machines (libgomp
// creates the workers again, and the master spins at the barrier on the core
// where the kernel queued them). A device thread that ran it at every sleep
// re-created its team on every step of any loop that waits for the device
// after team-sized work (a 128x128 product and `.item()`: 4-16 ms a step
// against 0.04-0.4 ms on the CPU), and spent 3-4 ms per decoded token in it.
// So a device thread releases its team only after 100 ms with nothing queued:
// then CPU eager work in the same process gets its cores back (while both
// teams live, libgomp counts more threads than cores and every region of
// either wakes its workers through the kernel). A host thread still releases
// its team whenever it sleeps waiting for the device: kept, it throttled the
// device's team in every loop that alternates CPU eager and device work
// (accelerate's training loops 1.7x slower).
constexpr std::chrono::milliseconds kDeviceTeamIdle{100};

void before_sleep() {
  if (srSleepHook_t hook = g_sleep_hook.load(std::memory_order_acquire)) hook();
}

void execute(srStream* s, Task& t) {
  Device* dev = s->device;
  switch (t.kind) {
    case Task::Kind::Kernel:
      run_kernel(dev, t.kernel, t.grid, t.block, t.args());
      break;
    case Task::Kind::HostFn:
      run_host_fn(dev, t.host_fn, t.user_data);
      break;
    case Task::Kind::Copy:
      execute_copy(dev, t.dst, t.src, t.count);
      break;
    case Task::Kind::Set:
      execute_set(dev, t.dst, t.value, t.count);
      break;
    case Task::Kind::EventRecord:
      execute_event_record(t);
      break;
    case Task::Kind::WaitStream:
      wait_for(t.wait_stream, t.wait_seq);
      break;
    case Task::Kind::Graph:
      execute_graph(dev, t.graph_exec);
      break;
  }
}

// A task launched while activity tracing was on: timed and recorded; a
// graph's nodes are recorded one by one (execute_graph).
void execute_traced(srStream* s, Task& t) {
  if (t.kind == Task::Kind::Graph) {
    const GraphNodeTracer tracer{s, &t.trace};
    t_graph_tracer = &tracer;
    execute(s, t);
    t_graph_tracer = nullptr;
    return;
  }
  const int64_t start_ns = wall_now_ns();
  execute(s, t);
  record_task(s, t, start_ns);
}

// Runs a slot's task; returns its sequence number.
uint64_t run_slot(srStream* s, TaskSlot& slot) {
  if (__builtin_expect(slot.task.traced, 0)) {
    execute_traced(s, slot.task);
  } else {
    execute(s, slot.task);
  }
  // Release what the task owns before announcing completion, so a waiter
  // that frees memory afterwards never races with the task's destructor.
  if (slot.task.heap_args) slot.task.heap_args.reset();
  return slot.task.seq;
}

void announce_completed(srStream* s, uint64_t seq) {
  s->completed.store(seq, std::memory_order_seq_cst);
  if (s->waiters.load(std::memory_order_seq_cst) > 0 && seq >= s->wake_at.load(std::memory_order_seq_cst)) {
    {
      std::lock_guard<std::mutex> lock(s->done_mutex);
      s->wake_at.store(UINT64_MAX, std::memory_order_seq_cst);  // woken waiters that need more register again
    }
    s->done_cv.notify_all();
  }
}

// Hands a segment whose slots all ran back to the submitting side.
void return_segment(srStream* s, TaskSegment* segment) {
  segment->next.store(nullptr, std::memory_order_relaxed);
  TaskSegment* head = s->returned_segments.load(std::memory_order_relaxed);
  do {
    segment->next_spare = head;
  } while (!s->returned_segments.compare_exchange_weak(head, segment, std::memory_order_release,
                                                       std::memory_order_relaxed));
}

bool published(const TaskSlot& slot, uint64_t seq, std::memory_order order) {
  return slot.published.load(order) == seq;
}

// False when the stream is stopping and nothing is left to run.
bool wait_for_task(srStream* s, const TaskSlot& slot, int64_t spin_ns) {
  const uint64_t seq = s->head_seq;
  if (spin_until([&] { return published(slot, seq, std::memory_order_acquire); }, spin_ns)) return true;
  std::unique_lock<std::mutex> lock(s->sleep_mutex);
  // seq_cst on both sides (this flag then the slot here; the slot then this
  // flag in submit): either the host sees the device thread asleep, or the
  // device thread sees the task.
  s->worker_sleeping.store(true, std::memory_order_seq_cst);
  const auto woken = [&] {
    return published(slot, seq, std::memory_order_seq_cst) || s->stop_requested.load(std::memory_order_acquire);
  };
  if (!s->sleep_cv.wait_for(lock, kDeviceTeamIdle, woken)) {
    lock.unlock();
    before_sleep();
    lock.lock();
    s->sleep_cv.wait(lock, woken);
  }
  s->worker_sleeping.store(false, std::memory_order_relaxed);
  return published(slot, seq, std::memory_order_acquire);
}

// Marks the start (running) or the end of a run of work: busy time is
// counted per run, so a queue that stays busy pays no clock reads.
void set_busy(srStream* s, bool running) {
  const int64_t now = now_ns();
  const uint32_t seq = s->busy_seq.load(std::memory_order_relaxed);
  s->busy_seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  if (running) {
    s->busy_since.store(now, std::memory_order_relaxed);
  } else {
    const int64_t since = s->busy_since.load(std::memory_order_relaxed);
    s->busy_ns.store(s->busy_ns.load(std::memory_order_relaxed) + (now - since), std::memory_order_relaxed);
    s->busy_since.store(0, std::memory_order_relaxed);
  }
  s->busy_seq.store(seq + 2, std::memory_order_release);
}

// Any thread: the stream's busy time, with the run in progress.
int64_t busy_time(const srStream* s) {
  for (;;) {
    const uint32_t seq = s->busy_seq.load(std::memory_order_acquire);
    if ((seq & 1u) != 0) {
      cpu_relax();
      continue;
    }
    const int64_t done = s->busy_ns.load(std::memory_order_relaxed);
    const int64_t since = s->busy_since.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (s->busy_seq.load(std::memory_order_relaxed) == seq) return done + (since != 0 ? now_ns() - since : 0);
  }
}

void worker_loop(srStream* s) {
  name_this_thread("sunrise" + std::to_string(s->device->index) + ":stream");
  const int64_t spin_ns = config().spin_ns;
  set_busy(s, true);
  for (;;) {
    TaskSlot& slot = s->head_segment->slots[s->head_index];
    if (!published(slot, s->head_seq, std::memory_order_acquire)) {
      set_busy(s, false);
      if (!wait_for_task(s, slot, spin_ns)) return;
      set_busy(s, true);
    }
    const uint64_t seq = run_slot(s, slot);
    ++s->head_seq;
    if (++s->head_index == TaskSegment::kSlots) {
      TaskSegment* done = s->head_segment;
      s->head_segment = done->next.load(std::memory_order_acquire);
      s->head_index = 0;
      return_segment(s, done);
    }
    announce_completed(s, seq);
  }
}

// A segment for the submitting side, reused when the device thread returned one.
TaskSegment* take_segment(srStream* s) {
  if (s->spare_segments == nullptr) {
    s->spare_segments = s->returned_segments.exchange(nullptr, std::memory_order_acquire);
  }
  if (TaskSegment* segment = s->spare_segments) {
    s->spare_segments = segment->next_spare;
    return segment;
  }
  s->segments.push_back(std::make_unique<TaskSegment>());
  return s->segments.back().get();
}

}  // namespace

bool run_kernel(Device* dev, srKernel_t kernel, srDim3 grid, srDim3 block, void* args) {
  auto job = std::make_shared<KernelJob>();
  job->kernel = kernel;
  job->grid = grid;
  job->block = block;
  job->args = args;
  job->device = dev->index;
  job->total_blocks = uint64_t{grid.x} * grid.y * grid.z;
  if (job->total_blocks == 1 || dev->prop.multiProcessorCount == 1) {
    run_blocks(*job, 0);
  } else {
    dev->compute_pool().run(job);
  }
  if (job->error == srSuccess) return true;
  dev->set_sticky(job->error, job->error_detail);
  return false;
}

bool run_host_fn(Device* dev, srHostFn_t fn, void* user_data) {
  // A host function reports failure through srReportAsyncError, which
  // records against this pseudo-job.
  KernelJob job;
  job.device = dev->index;
  KernelJob* saved = t_current_job;
  const int saved_device = t_executing_device;
  t_current_job = &job;
  t_executing_device = dev->index;
  try {
    fn(user_data);
  } catch (const std::exception& e) {
    job.error = srErrorLaunchFailure;
    job.error_detail = std::string("host function threw: ") + e.what();
  } catch (...) {
    job.error = srErrorLaunchFailure;
    job.error_detail = "host function threw a non-standard exception";
  }
  t_current_job = saved;
  t_executing_device = saved_device;
  if (job.error == srSuccess) return true;
  dev->set_sticky(job.error, job.error_detail);
  return false;
}

srError_t check_stream(srStream_t stream) {
  if (stream == nullptr)
    return fail(srErrorInvalidResourceHandle,
                "stream handle is NULL; sunrise_rt has no implicit null stream, use srDeviceGetDefaultStream");
  if (!stream_registry().contains(stream))
    return fail(srErrorInvalidResourceHandle, "stream handle was not created by this runtime");
  if (!stream->valid()) return fail(srErrorInvalidResourceHandle, "stream handle was destroyed");
  return srSuccess;
}

srError_t create_stream(Device* dev, int priority, unsigned flags, bool is_default, srStream** out) {
  auto s = std::make_unique<srStream>();
  s->device = dev;
  s->priority = priority;
  s->flags = flags;
  s->is_default = is_default;
  srStream* raw = s.get();
  {
    std::lock_guard<std::mutex> lock(g_graveyard_mutex);
    all_streams().push_back(std::move(s));
  }
  stream_registry().add(raw);
  {
    std::lock_guard<std::mutex> lock(dev->streams_mutex);
    dev->live_streams.push_back(raw);
  }
  *out = raw;
  return srSuccess;
}

srError_t submit(srStream* s, Task&& task, uint64_t* seq_out) {
  uint64_t seq = 0;
  if (__builtin_expect(activity_enabled(), 0)) {
    task.traced = true;
    begin_launch_trace(task.trace);
  }
  {
    std::lock_guard<std::mutex> lock(s->submit_mutex);
    if (s->stopping) return fail(srErrorInvalidResourceHandle, "stream is being destroyed");
    if (s->capture) {
      srError_t result = srSuccess;
      if (record_captured(s, task, &result)) {
        if (seq_out) *seq_out = 0;
        return result;
      }
    }
    if (!s->worker.joinable()) {
      try {
        TaskSegment* first = take_segment(s);
        s->tail_segment = first;
        s->head_segment = first;  // before the thread starts, which orders it
        s->worker = std::thread(worker_loop, s);
      } catch (const std::system_error& e) {
        return fail(srErrorInitializationError, std::string("could not start the stream's device thread: ") + e.what());
      }
    }
    seq = s->submitted.load(std::memory_order_relaxed) + 1;
    task.seq = seq;
    TaskSegment* segment = s->tail_segment;
    TaskSlot& slot = segment->slots[s->tail_index];
    if (++s->tail_index == TaskSegment::kSlots) {
      TaskSegment* next = take_segment(s);
      segment->next.store(next, std::memory_order_release);  // before the slot below is published
      s->tail_segment = next;
      s->tail_index = 0;
    }
    if (task.traced) end_launch_trace(task.trace);
    slot.task.take(std::move(task));
    slot.published.store(seq, std::memory_order_seq_cst);
    s->submitted.store(seq, std::memory_order_seq_cst);
  }
  if (s->worker_sleeping.load(std::memory_order_seq_cst)) {
    { std::lock_guard<std::mutex> lock(s->sleep_mutex); }
    s->sleep_cv.notify_one();
  }
  if (seq_out) *seq_out = seq;
  const uint64_t depth = static_cast<uint64_t>(config().max_queued);
  if (seq > depth && s->completed_seen.load(std::memory_order_relaxed) < seq - depth) {
    if (s->completed.load(std::memory_order_acquire) < seq - depth) {
      // The host is a whole queue ahead: sleep (spinning would take a core
      // from the device's own threads) until half the queue has run, so the
      // host wakes once per depth/2 launches rather than once per launch.
      wait_for(s, seq - depth / 2, /*allow_spin=*/false);
    }
    s->completed_seen.store(s->completed.load(std::memory_order_acquire), std::memory_order_relaxed);
  }
  if (config().launch_blocking) {
    wait_for(s, seq);
    return s->device->report_sticky();
  }
  return srSuccess;
}

void wait_for(srStream* s, uint64_t seq, bool allow_spin) {
  auto done = [s, seq] { return s->completed.load(std::memory_order_seq_cst) >= seq; };
  if (allow_spin ? spin_until(done, config().spin_ns) : done()) return;
  before_sleep();
  s->waiters.fetch_add(1, std::memory_order_seq_cst);
  {
    std::unique_lock<std::mutex> lock(s->done_mutex);
    while (!done()) {
      uint64_t target = s->wake_at.load(std::memory_order_seq_cst);
      while (seq < target && !s->wake_at.compare_exchange_weak(target, seq, std::memory_order_seq_cst)) {
      }
      if (done()) break;  // completed between the check and the registration
      s->done_cv.wait(lock);
    }
  }
  s->waiters.fetch_sub(1, std::memory_order_seq_cst);
}

srError_t synchronize_stream(srStream* s) {
  wait_for(s, s->submitted.load(std::memory_order_seq_cst));
  return s->device->report_sticky();
}

}  // namespace sunrise_rt

using namespace sunrise_rt;

extern "C" {

srError_t srDeviceGetDefaultStream(int device, srStream_t* stream) {
  if (stream == nullptr) return fail(srErrorInvalidValue, "srDeviceGetDefaultStream: stream is NULL");
  Device* dev = nullptr;
  if (srError_t e = get_device(device, &dev)) return e;
  *stream = dev->default_stream;
  return ok();
}

srError_t srDeviceGetStreamPriorityRange(int* least, int* greatest) {
  if (least) *least = 0;
  if (greatest) *greatest = -1;
  return ok();
}

srError_t srStreamCreate(srStream_t* stream) { return srStreamCreateWithPriority(stream, srStreamDefault, 0); }

srError_t srStreamCreateWithPriority(srStream_t* stream, unsigned flags, int priority) {
  if (stream == nullptr) return fail(srErrorInvalidValue, "srStreamCreate: stream is NULL");
  Device* dev = nullptr;
  if (srError_t e = current_device(&dev)) return e;
  // Clamp like CUDA: out-of-range priorities are not an error.
  if (priority > 0) priority = 0;
  if (priority < -1) priority = -1;
  srStream* s = nullptr;
  if (srError_t e = create_stream(dev, priority, flags, false, &s)) return e;
  *stream = s;
  return ok();
}

srError_t srStreamDestroy(srStream_t stream) {
  if (srError_t e = check_stream(stream)) return e;
  if (stream->is_default) return fail(srErrorInvalidResourceHandle, "the default stream cannot be destroyed");
  if (srError_t e = check_not_capturing(stream, "srStreamDestroy")) return e;
  uint32_t expected = srStream::kLive;
  if (!stream->magic.compare_exchange_strong(expected, 0))
    return fail(srErrorInvalidResourceHandle, "stream handle was destroyed");
  wait_for(stream, stream->submitted.load());
  {
    std::lock_guard<std::mutex> lock(stream->submit_mutex);
    stream->stopping = true;
  }
  {
    std::lock_guard<std::mutex> lock(stream->sleep_mutex);
    stream->stop_requested.store(true, std::memory_order_release);
  }
  stream->sleep_cv.notify_one();
  if (stream->worker.joinable()) stream->worker.join();
  {
    Device* dev = stream->device;
    std::lock_guard<std::mutex> lock(dev->streams_mutex);
    auto& v = dev->live_streams;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == stream) {
        v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(stream->submit_mutex);
    stream->tail_segment = stream->head_segment = stream->spare_segments = nullptr;
    stream->returned_segments.store(nullptr);
    std::vector<std::unique_ptr<TaskSegment>>().swap(stream->segments);
  }
  return ok();
}

srError_t srStreamSynchronize(srStream_t stream) {
  if (srError_t e = check_stream(stream)) return e;
  if (srError_t e = check_not_capturing(stream, "srStreamSynchronize")) return e;
  if (srError_t e = synchronize_stream(stream)) return e;
  return ok();
}

srError_t srStreamQuery(srStream_t stream) {
  if (srError_t e = check_stream(stream)) return e;
  if (srError_t e = check_not_capturing(stream, "srStreamQuery")) return e;
  if (stream->completed.load(std::memory_order_seq_cst) < stream->submitted.load(std::memory_order_seq_cst))
    return srErrorNotReady;
  if (srError_t e = stream->device->report_sticky()) return e;
  return ok();
}

srError_t srStreamGetDevice(srStream_t stream, int* device) {
  if (srError_t e = check_stream(stream)) return e;
  if (device == nullptr) return fail(srErrorInvalidValue, "srStreamGetDevice: device is NULL");
  *device = stream->device->index;
  return ok();
}

srError_t srStreamGetPriority(srStream_t stream, int* priority) {
  if (srError_t e = check_stream(stream)) return e;
  if (priority == nullptr) return fail(srErrorInvalidValue, "srStreamGetPriority: priority is NULL");
  *priority = stream->priority;
  return ok();
}

srError_t srLaunchKernel(srKernel_t kernel, srDim3 grid, srDim3 block, const void* args, size_t argsSize,
                         srStream_t stream) {
  if (srError_t e = check_stream(stream)) return e;
  if (kernel == nullptr) return fail(srErrorInvalidValue, "srLaunchKernel: kernel is NULL");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0) {
    return fail(srErrorInvalidConfiguration, "srLaunchKernel: grid and block dimensions must all be >= 1 (got grid=" +
                                                 std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" +
                                                 std::to_string(grid.z) + ")");
  }
  const srDeviceProp& prop = stream->device->prop;
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (threads > static_cast<uint64_t>(prop.maxThreadsPerBlock) || grid.x > unsigned(prop.maxGridSize[0]) ||
      grid.y > unsigned(prop.maxGridSize[1]) || grid.z > unsigned(prop.maxGridSize[2])) {
    return fail(srErrorInvalidConfiguration,
                "srLaunchKernel: grid " + std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" +
                    std::to_string(grid.z) + " with " + std::to_string(threads) +
                    " threads per block exceeds the device limits (maxGridSize " +
                    std::to_string(prop.maxGridSize[0]) + "x" + std::to_string(prop.maxGridSize[1]) + "x" +
                    std::to_string(prop.maxGridSize[2]) + ", maxThreadsPerBlock " +
                    std::to_string(prop.maxThreadsPerBlock) + ")");
  }
  if (argsSize > SR_MAX_KERNEL_ARGS_BYTES) {
    return fail(srErrorInvalidConfiguration, "srLaunchKernel: " + std::to_string(argsSize) +
                                                 " bytes of arguments exceed the limit of " +
                                                 std::to_string(SR_MAX_KERNEL_ARGS_BYTES));
  }
  if (argsSize > 0 && args == nullptr) return fail(srErrorInvalidValue, "srLaunchKernel: args is NULL");
  if (srError_t e = stream->device->report_sticky()) return e;
  Task t;
  t.kind = Task::Kind::Kernel;
  t.kernel = kernel;
  t.grid = grid;
  t.block = block;
  t.args_size = argsSize;
  if (argsSize > Task::kInlineArgs) t.heap_args = std::make_unique<unsigned char[]>(argsSize);
  if (argsSize > 0) std::memcpy(t.args(), args, argsSize);
  if (srError_t e = submit(stream, std::move(t))) return e;
  return ok();
}

srError_t srLaunchHostFunc(srStream_t stream, srHostFn_t fn, void* user_data) {
  if (srError_t e = check_stream(stream)) return e;
  if (fn == nullptr) return fail(srErrorInvalidValue, "srLaunchHostFunc: fn is NULL");
  Task t;
  t.kind = Task::Kind::HostFn;
  t.host_fn = fn;
  t.user_data = user_data;
  if (srError_t e = submit(stream, std::move(t))) return e;
  return ok();
}

srError_t srDeviceGetBusyTime(int device, long long* ns) {
  if (ns == nullptr) return fail(srErrorInvalidValue, "srDeviceGetBusyTime: ns is NULL");
  Device* dev = nullptr;
  if (srError_t e = get_device(device, &dev)) return e;
  int64_t total = 0;
  std::lock_guard<std::mutex> lock(g_graveyard_mutex);  // destroyed streams' time counts too
  for (const auto& s : all_streams()) {
    if (s->device == dev) total += busy_time(s.get());
  }
  *ns = total;
  return ok();
}

void srSetSleepHook(srSleepHook_t hook) { g_sleep_hook.store(hook, std::memory_order_release); }

void srReportAsyncError(srError_t error, const char* message) {
  const std::string text = message ? message : "";
  if (KernelJob* job = t_current_job) {
    std::lock_guard<std::mutex> lock(job->error_mutex);
    if (job->error == srSuccess) {
      job->error = error == srSuccess ? srErrorLaunchFailure : error;
      job->error_detail = text;
    }
    return;
  }
  // Outside device work: attribute to the caller's current device.
  Device* dev = nullptr;
  if (current_device(&dev) == srSuccess) dev->set_sticky(error == srSuccess ? srErrorLaunchFailure : error, text);
}

}  // extern "C"
