// Events mark a point in a stream: complete once the stream has run every task
// submitted before the record. Timing events also enqueue a marker that reads
// the device clock when the stream reaches it.
#include "internal.h"

namespace sunrise_rt {
namespace {

// Event memory is never returned to the system, so a stale handle stays
// readable and reports srErrorInvalidResourceHandle; destroyed events are
// recycled by later creates (as CUDA may reuse handles), which bounds memory in
// programs that create an event per step.
std::mutex g_events_mutex;  // guards both containers
std::vector<std::unique_ptr<srEvent>>& all_events() {
  static auto& v = *std::make_unique<std::vector<std::unique_ptr<srEvent>>>().release();
  return v;
}
std::vector<srEvent*>& free_events() {
  static auto& v = *std::make_unique<std::vector<srEvent*>>().release();
  return v;
}

HandleRegistry<srEvent>& event_registry() {
  static auto& r = *std::make_unique<HandleRegistry<srEvent>>().release();
  return r;
}

struct RecordedPoint {
  srStream* stream = nullptr;
  uint64_t seq = 0;
  bool recorded = false;
};

RecordedPoint point_of(srEvent* e) {
  std::lock_guard<std::mutex> lock(e->mutex);
  return {e->stream, e->seq, e->recorded};
}

bool reached(const RecordedPoint& p) {
  return !p.recorded || p.stream->completed.load(std::memory_order_seq_cst) >= p.seq;
}

}  // namespace

srError_t check_event(srEvent_t event) {
  if (event == nullptr) return fail(srErrorInvalidResourceHandle, "event handle is NULL");
  if (!event_registry().contains(event))
    return fail(srErrorInvalidResourceHandle, "event handle was not created by this runtime");
  if (!event->valid()) return fail(srErrorInvalidResourceHandle, "event handle was destroyed");
  return srSuccess;
}

void execute_event_record(Task& task) {
  srEvent* e = task.event;
  // Generations only grow (also across recycling), so a marker of an older
  // record never overwrites the timestamp of a newer one.
  std::lock_guard<std::mutex> lock(e->mutex);
  if (task.event_generation > e->timestamp_generation.load(std::memory_order_relaxed)) {
    e->timestamp_ns.store(now_ns(), std::memory_order_relaxed);
    e->timestamp_generation.store(task.event_generation, std::memory_order_release);
  }
}

}  // namespace sunrise_rt

using namespace sunrise_rt;

extern "C" {

srError_t srEventCreate(srEvent_t* event) { return srEventCreateWithFlags(event, srEventDefault); }

srError_t srEventCreateWithFlags(srEvent_t* event, unsigned flags) {
  if (event == nullptr) return fail(srErrorInvalidValue, "srEventCreate: event is NULL");
  if (flags & ~unsigned(srEventBlockingSync | srEventDisableTiming))
    return fail(srErrorInvalidValue, "srEventCreateWithFlags: unknown flag bits " + std::to_string(flags));
  std::lock_guard<std::mutex> lock(g_events_mutex);
  srEvent* e = nullptr;
  if (!free_events().empty()) {
    e = free_events().back();
    free_events().pop_back();
    std::lock_guard<std::mutex> event_lock(e->mutex);
    e->stream = nullptr;
    e->seq = 0;
    e->recorded = false;
    e->capture_id = 0;
    e->capture_nodes.clear();
    // generation keeps counting so that a stale timing marker never matches.
  } else {
    all_events().push_back(std::make_unique<srEvent>());
    e = all_events().back().get();
    event_registry().add(e);
  }
  e->flags = flags;
  e->magic.store(srEvent::kLive, std::memory_order_release);
  *event = e;
  return ok();
}

srError_t srEventDestroy(srEvent_t event) {
  if (srError_t e = check_event(event)) return e;
  uint32_t expected = srEvent::kLive;
  if (!event->magic.compare_exchange_strong(expected, 0))
    return fail(srErrorInvalidResourceHandle, "event handle was destroyed");
  std::lock_guard<std::mutex> lock(g_events_mutex);
  free_events().push_back(event);
  return ok();
}

srError_t srEventRecord(srEvent_t event, srStream_t stream) {
  if (srError_t e = check_event(event)) return e;
  if (srError_t e = check_stream(stream)) return e;
  bool captured = false;
  if (srError_t e = record_event_in_capture(event, stream, &captured)) return e;
  if (captured) return ok();
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    generation = ++event->issued_generation;
  }
  // The lock is not held across submit: with SUNRISE_LAUNCH_BLOCKING=1 submit
  // waits for the marker, which takes the event's lock to store its timestamp.
  uint64_t seq = 0;
  if (event->timing()) {
    Task t;
    t.kind = Task::Kind::EventRecord;
    t.event = event;
    t.event_generation = generation;
    if (srError_t e = submit(stream, std::move(t), &seq)) return e;
  } else {
    // No marker needed: completion is "the stream got past its current tail".
    seq = stream->submitted.load(std::memory_order_seq_cst);
  }
  std::lock_guard<std::mutex> lock(event->mutex);
  if (generation > event->generation) {  // a newer concurrent record wins otherwise
    event->generation = generation;
    event->seq = seq;
    event->stream = stream;
    event->recorded = true;
    event->capture_id = 0;
    event->capture_nodes.clear();
  }
  return ok();
}

srError_t srEventQuery(srEvent_t event) {
  if (srError_t e = check_event(event)) return e;
  if (srError_t e = check_event_not_captured(event, "srEventQuery")) return e;
  const RecordedPoint p = point_of(event);
  if (!reached(p)) return srErrorNotReady;
  if (p.recorded) {
    if (srError_t e = p.stream->device->report_sticky()) return e;
  }
  return ok();
}

srError_t srEventSynchronize(srEvent_t event) {
  if (srError_t e = check_event(event)) return e;
  if (srError_t e = check_event_not_captured(event, "srEventSynchronize")) return e;
  const RecordedPoint p = point_of(event);
  if (!p.recorded) return ok();
  // A blocking-sync event sleeps right away instead of spinning the host core.
  wait_for(p.stream, p.seq, (event->flags & srEventBlockingSync) == 0);
  if (srError_t e = p.stream->device->report_sticky()) return e;
  return ok();
}

srError_t srEventElapsedTime(float* ms, srEvent_t start, srEvent_t end) {
  if (ms == nullptr) return fail(srErrorInvalidValue, "srEventElapsedTime: ms is NULL");
  if (srError_t e = check_event(start)) return e;
  if (srError_t e = check_event(end)) return e;
  if (srError_t e = check_event_not_captured(start, "srEventElapsedTime")) return e;
  if (srError_t e = check_event_not_captured(end, "srEventElapsedTime")) return e;
  if (!start->timing() || !end->timing())
    return fail(srErrorInvalidResourceHandle, "srEventElapsedTime: both events need timing enabled");
  srEvent* both[2] = {start, end};
  int64_t stamps[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    uint64_t generation = 0;
    RecordedPoint p;
    {
      std::lock_guard<std::mutex> lock(both[i]->mutex);
      p = {both[i]->stream, both[i]->seq, both[i]->recorded};
      generation = both[i]->generation;
    }
    if (!p.recorded)
      return fail(srErrorInvalidResourceHandle, "srEventElapsedTime: an event was never recorded");
    if (!reached(p)) return fail(srErrorNotReady, "srEventElapsedTime: an event has not completed yet");
    if (both[i]->timestamp_generation.load(std::memory_order_acquire) != generation)
      return fail(srErrorNotReady, "srEventElapsedTime: an event has not completed yet");
    stamps[i] = both[i]->timestamp_ns.load(std::memory_order_relaxed);
  }
  *ms = static_cast<float>(static_cast<double>(stamps[1] - stamps[0]) / 1e6);
  return ok();
}

srError_t srStreamWaitEvent(srStream_t stream, srEvent_t event, unsigned flags) {
  if (srError_t e = check_stream(stream)) return e;
  if (srError_t e = check_event(event)) return e;
  if (flags != 0) return fail(srErrorInvalidValue, "srStreamWaitEvent: flags must be 0");
  bool captured = false;
  if (srError_t e = wait_event_in_capture(stream, event, &captured)) return e;
  if (captured) return ok();
  const RecordedPoint p = point_of(event);
  // Nothing to wait for: unrecorded, already done, or same stream (in order).
  if (reached(p) || p.stream == stream) return ok();
  Task t;
  t.kind = Task::Kind::WaitStream;
  t.wait_stream = p.stream;
  t.wait_seq = p.seq;
  if (srError_t e = submit(stream, std::move(t))) return e;
  return ok();
}

}  // extern "C"
