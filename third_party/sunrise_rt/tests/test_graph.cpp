// Stream capture and graphs: recording instead of running, replay, fork/join
// across streams, capture modes, and the calls a capture refuses.
#include "harness.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

using namespace srtest;

namespace {

// Each block adds `delta` to its element of a device array of floats.
struct AddArgs {
  float* data;
  float delta;
};

void add_kernel(const srKernelContext* ctx, void* raw) {
  auto* a = static_cast<AddArgs*>(raw);
  auto* d = static_cast<float*>(srKernelAddress(a->data));
  d[ctx->blockIdx.x] += a->delta;
}

// Doubles every element: order against add_kernel is visible in the result.
void double_kernel(const srKernelContext* ctx, void* raw) {
  auto* a = static_cast<AddArgs*>(raw);
  auto* d = static_cast<float*>(srKernelAddress(a->data));
  d[ctx->blockIdx.x] *= 2.0f;
}

void count_host_fn(void* counter) { static_cast<std::atomic<int>*>(counter)->fetch_add(1); }

struct Stream {
  srStream_t s = nullptr;
  Stream() { CHECK_SR(srStreamCreate(&s)); }
  ~Stream() {
    if (s) CHECK_SR(srStreamDestroy(s));
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

struct Event {
  srEvent_t e = nullptr;
  Event() { CHECK_SR(srEventCreateWithFlags(&e, srEventDisableTiming)); }
  ~Event() {
    if (e) CHECK_SR(srEventDestroy(e));
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

struct DeviceFloats {
  float* p = nullptr;
  size_t n;
  explicit DeviceFloats(size_t count) : n(count) {
    CHECK_SR(srMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)));
    CHECK_SR(srMemset(p, 0, n * sizeof(float)));
  }
  ~DeviceFloats() { CHECK_SR(srFree(p)); }
  std::vector<float> read() const {
    std::vector<float> host(n);
    CHECK_SR(srMemcpy(host.data(), p, n * sizeof(float), srMemcpyDeviceToHost));
    return host;
  }
};

void launch_add(srStream_t s, float* data, unsigned n, float delta) {
  AddArgs a{data, delta};
  CHECK_SR(srLaunchKernel(&add_kernel, srDim3{n, 1, 1}, srDim3{1, 1, 1}, &a, sizeof(a), s));
}

void launch_double(srStream_t s, float* data, unsigned n) {
  AddArgs a{data, 0.0f};
  CHECK_SR(srLaunchKernel(&double_kernel, srDim3{n, 1, 1}, srDim3{1, 1, 1}, &a, sizeof(a), s));
}

// Ends a capture expected to have failed, so that no test leaves one behind;
// returns the error's detail.
std::string end_failed_capture(srStream_t s, srError_t want) {
  srGraph_t g = nullptr;
  CHECK_ERR(srStreamEndCapture(s, &g), want);
  const std::string detail = srGetLastErrorDetail();
  CHECK(g == nullptr);
  srStreamCaptureStatus status;
  CHECK_SR(srStreamIsCapturing(s, &status));
  CHECK_EQ(status, srStreamCaptureStatusNone);
  return detail;
}

}  // namespace

TEST(graph_capture_records_instead_of_running_and_replays) {
  Stream st;
  DeviceFloats buf(64);
  std::atomic<int> host_calls{0};
  float host_src[64];
  for (int i = 0; i < 64; ++i) host_src[i] = float(i);
  float* pinned = nullptr;
  REQUIRE_SR(srMallocHost(reinterpret_cast<void**>(&pinned), sizeof(host_src)));
  std::memcpy(pinned, host_src, sizeof(host_src));

  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  srStreamCaptureStatus status;
  unsigned long long id = 0;
  CHECK_SR(srStreamGetCaptureInfo(st.s, &status, &id));
  CHECK_EQ(status, srStreamCaptureStatusActive);
  CHECK(id != 0);
  CHECK_SR(srMemcpyAsync(buf.p, pinned, sizeof(host_src), srMemcpyHostToDevice, st.s));  // buf = i
  launch_add(st.s, buf.p, 64, 1.0f);                                                      // i + 1
  launch_double(st.s, buf.p, 64);                                                         // 2i + 2
  CHECK_SR(srLaunchHostFunc(st.s, &count_host_fn, &host_calls));
  CHECK_SR(srMemsetAsync(buf.p, 0, 4 * sizeof(float), st.s));  // the first four become 0
  srGraph_t graph = nullptr;
  CHECK_SR(srStreamEndCapture(st.s, &graph));
  REQUIRE(graph != nullptr);
  size_t nodes = 0;
  CHECK_SR(srGraphGetNodeCount(graph, &nodes));
  CHECK_EQ(nodes, size_t{5});
  // Nothing ran at capture time.
  CHECK_SR(srStreamSynchronize(st.s));
  CHECK_EQ(host_calls.load(), 0);
  CHECK_EQ(buf.read()[10], 0.0f);

  srGraphExec_t exec = nullptr;
  CHECK_SR(srGraphInstantiate(&exec, graph));
  CHECK_SR(srGraphDestroy(graph));  // the executable graph keeps its own nodes
  for (int replay = 1; replay <= 3; ++replay) {
    pinned[10] = float(100 * replay);  // replays read the inputs' current contents
    CHECK_SR(srGraphLaunch(exec, st.s));
    CHECK_SR(srStreamSynchronize(st.s));
    const std::vector<float> out = buf.read();
    CHECK_EQ(host_calls.load(), replay);
    CHECK_EQ(out[10], float(2 * (100 * replay + 1)));
    CHECK_EQ(out[63], float(2 * 64));
    CHECK_EQ(out[2], 0.0f);
  }
  CHECK_SR(srGraphExecDestroy(exec));
  CHECK_ERR(srGraphLaunch(exec, st.s), srErrorInvalidResourceHandle);
  CHECK_ERR(srGraphDestroy(graph), srErrorInvalidResourceHandle);
  CHECK_SR(srFreeHost(pinned));
}

TEST(graph_launches_are_asynchronous_and_in_stream_order) {
  Stream st;
  DeviceFloats buf(8);
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  launch_double(st.s, buf.p, 8);
  srGraph_t graph = nullptr;
  CHECK_SR(srStreamEndCapture(st.s, &graph));
  srGraphExec_t exec = nullptr;
  CHECK_SR(srGraphInstantiate(&exec, graph));
  // add 1, double, add 1, double: (((0 + 1) * 2) + 1) * 2 = 6, only in order.
  launch_add(st.s, buf.p, 8, 1.0f);
  CHECK_SR(srGraphLaunch(exec, st.s));
  launch_add(st.s, buf.p, 8, 1.0f);
  CHECK_SR(srGraphLaunch(exec, st.s));
  CHECK_SR(srStreamSynchronize(st.s));
  CHECK_EQ(buf.read()[7], 6.0f);
  // A launch on another stream still follows the previous launch.
  Stream other;
  CHECK_SR(srGraphLaunch(exec, st.s));
  CHECK_SR(srGraphLaunch(exec, other.s));
  CHECK_SR(srStreamSynchronize(other.s));
  CHECK_EQ(buf.read()[7], 24.0f);
  CHECK_SR(srGraphExecDestroy(exec));
  CHECK_SR(srGraphDestroy(graph));
}

TEST(graph_fork_join_across_streams) {
  Stream origin, side;
  Event fork, join;
  DeviceFloats a(16), b(16);
  CHECK_SR(srStreamBeginCapture(origin.s, srStreamCaptureModeGlobal));
  launch_add(origin.s, a.p, 16, 3.0f);
  CHECK_SR(srEventRecord(fork.e, origin.s));
  CHECK_SR(srStreamWaitEvent(side.s, fork.e, 0));  // side joins the capture
  srStreamCaptureStatus status;
  CHECK_SR(srStreamIsCapturing(side.s, &status));
  CHECK_EQ(status, srStreamCaptureStatusActive);
  launch_add(side.s, b.p, 16, 5.0f);
  launch_double(origin.s, a.p, 16);
  CHECK_SR(srEventRecord(join.e, side.s));
  CHECK_SR(srStreamWaitEvent(origin.s, join.e, 0));
  launch_add(origin.s, a.p, 16, 1.0f);
  srGraph_t graph = nullptr;
  CHECK_SR(srStreamEndCapture(origin.s, &graph));
  REQUIRE(graph != nullptr);
  CHECK_SR(srStreamIsCapturing(side.s, &status));
  CHECK_EQ(status, srStreamCaptureStatusNone);
  // The joined stream is an ordinary stream again.
  launch_add(side.s, b.p, 16, 100.0f);
  CHECK_SR(srStreamSynchronize(side.s));
  CHECK_EQ(b.read()[0], 100.0f);

  srGraphExec_t exec = nullptr;
  CHECK_SR(srGraphInstantiate(&exec, graph));
  CHECK_SR(srGraphLaunch(exec, origin.s));
  CHECK_SR(srStreamSynchronize(origin.s));
  CHECK_EQ(a.read()[5], 7.0f);    // (0 + 3) * 2 + 1
  CHECK_EQ(b.read()[5], 105.0f);  // 100 + 5
  const char* path = "sunrise_rt_test_graph.dot";
  CHECK_SR(srGraphDebugDotPrint(graph, path));
  std::ifstream dot(path);
  const std::string text((std::istreambuf_iterator<char>(dot)), std::istreambuf_iterator<char>());
  CHECK(text.find("digraph") != std::string::npos);
  CHECK(text.find("n0 -> n1") != std::string::npos);  // the side kernel depends on the first
  std::remove(path);
  CHECK_SR(srGraphExecDestroy(exec));
  CHECK_SR(srGraphDestroy(graph));
}

TEST(graph_capture_with_unjoined_fork_fails) {
  Stream origin, side;
  Event fork;
  DeviceFloats a(4);
  CHECK_SR(srStreamBeginCapture(origin.s, srStreamCaptureModeGlobal));
  CHECK_SR(srEventRecord(fork.e, origin.s));
  CHECK_SR(srStreamWaitEvent(side.s, fork.e, 0));
  launch_add(side.s, a.p, 4, 1.0f);
  srGraph_t graph = nullptr;
  CHECK_ERR(srStreamEndCapture(side.s, &graph), srErrorStreamCaptureUnmatched);
  end_failed_capture(origin.s, srErrorStreamCaptureInvalidated);

  CHECK_SR(srStreamBeginCapture(origin.s, srStreamCaptureModeGlobal));
  CHECK_SR(srEventRecord(fork.e, origin.s));
  CHECK_SR(srStreamWaitEvent(side.s, fork.e, 0));
  launch_add(side.s, a.p, 4, 1.0f);
  CHECK(end_failed_capture(origin.s, srErrorStreamCaptureUnjoined).find("not joined") != std::string::npos);
  srStreamCaptureStatus status;
  CHECK_SR(srStreamIsCapturing(side.s, &status));
  CHECK_EQ(status, srStreamCaptureStatusNone);
}

TEST(graph_capture_refuses_waiting_calls) {
  Stream st;
  DeviceFloats buf(4);
  // Synchronizing the capturing stream: refused, and the capture is lost.
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  launch_add(st.s, buf.p, 4, 1.0f);
  CHECK_ERR(srStreamSynchronize(st.s), srErrorStreamCaptureUnsupported);
  CHECK(std::string(srGetLastErrorDetail()).find("invalidated") != std::string::npos);
  srStreamCaptureStatus status;
  CHECK_SR(srStreamIsCapturing(st.s, &status));
  CHECK_EQ(status, srStreamCaptureStatusInvalidated);
  AddArgs args{buf.p, 1.0f};
  CHECK_ERR(srLaunchKernel(&add_kernel, srDim3{4, 1, 1}, srDim3{1, 1, 1}, &args, sizeof(args), st.s),
            srErrorStreamCaptureInvalidated);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);

  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_ERR(srStreamQuery(st.s), srErrorStreamCaptureUnsupported);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);

  // Calls that wait for the whole device, in each way they can.
  float host[4];
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_ERR(srDeviceSynchronize(), srErrorStreamCaptureUnsupported);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_ERR(srMemcpy(host, buf.p, sizeof(host), srMemcpyDeviceToHost), srErrorStreamCaptureUnsupported);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_ERR(srMemcpyAsync(host, buf.p, sizeof(host), srMemcpyDeviceToHost, st.s), srErrorStreamCaptureUnsupported);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);
  void* extra = nullptr;
  CHECK_SR(srMalloc(&extra, 256));  // allocating is allowed during capture, freeing is not
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  void* during = nullptr;
  CHECK_SR(srMalloc(&during, 256));
  CHECK_ERR(srFree(extra), srErrorStreamCaptureUnsupported);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);
  CHECK_SR(srFree(extra));
  CHECK_SR(srFree(during));

  // Relaxed: the capturing thread may synchronize the device (the capture's
  // own work is recorded, not queued).
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeRelaxed));
  launch_add(st.s, buf.p, 4, 1.0f);
  CHECK_SR(srDeviceSynchronize());
  srGraph_t graph = nullptr;
  CHECK_SR(srStreamEndCapture(st.s, &graph));
  CHECK_SR(srGraphDestroy(graph));
  CHECK_EQ(buf.read()[0], 0.0f);

  CHECK_ERR(srStreamEndCapture(st.s, &graph), srErrorIllegalState);
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_ERR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal), srErrorIllegalState);
  CHECK_ERR(srStreamDestroy(st.s), srErrorStreamCaptureUnsupported);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);
}

TEST(graph_capture_modes_decide_what_other_threads_may_do) {
  Stream st;
  DeviceFloats buf(4);
  auto from_other_thread = [](srStreamCaptureMode thread_mode) {
    srError_t result = srSuccess;
    std::thread t([&] {
      srStreamCaptureMode mode = thread_mode;
      srThreadExchangeStreamCaptureMode(&mode);
      result = srDeviceSynchronize();
    });
    t.join();
    return result;
  };
  // A global capture prohibits unsafe calls on every thread in global mode...
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_ERR(from_other_thread(srStreamCaptureModeGlobal), srErrorStreamCaptureUnsupported);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);
  // ...but not on threads that chose thread-local or relaxed interaction.
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_SR(from_other_thread(srStreamCaptureModeThreadLocal));
  CHECK_SR(from_other_thread(srStreamCaptureModeRelaxed));
  srGraph_t graph = nullptr;
  CHECK_SR(srStreamEndCapture(st.s, &graph));
  CHECK_SR(srGraphDestroy(graph));
  // A thread-local capture only concerns its own thread.
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeThreadLocal));
  CHECK_SR(from_other_thread(srStreamCaptureModeGlobal));
  CHECK_ERR(srDeviceSynchronize(), srErrorStreamCaptureUnsupported);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);
  // The exchange returns the previous mode.
  srStreamCaptureMode mode = srStreamCaptureModeRelaxed;
  CHECK_SR(srThreadExchangeStreamCaptureMode(&mode));
  CHECK_EQ(mode, srStreamCaptureModeGlobal);
  CHECK_SR(srThreadExchangeStreamCaptureMode(&mode));
  CHECK_EQ(mode, srStreamCaptureModeRelaxed);

  // Non-relaxed captures end on the thread that began them.
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  srError_t ended = srSuccess;
  std::thread([&] { ended = srStreamEndCapture(st.s, &graph); }).join();
  CHECK_ERR(ended, srErrorStreamCaptureWrongThread);
  CHECK_SR(srStreamEndCapture(st.s, &graph));
  CHECK_SR(srGraphDestroy(graph));
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeRelaxed));
  std::thread([&] { ended = srStreamEndCapture(st.s, &graph); }).join();
  CHECK_SR(ended);
  CHECK_SR(srGraphDestroy(graph));
}

TEST(graph_capture_events_and_isolation) {
  Stream st, busy;
  Event e, pending;
  DeviceFloats buf(4);
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_SR(srEventRecord(e.e, st.s));
  CHECK_ERR(srEventQuery(e.e), srErrorCapturedEvent);
  CHECK_ERR(srEventSynchronize(e.e), srErrorCapturedEvent);
  srGraph_t graph = nullptr;
  CHECK_SR(srStreamEndCapture(st.s, &graph));
  CHECK_SR(srGraphDestroy(graph));
  CHECK_SR(srEventQuery(e.e));  // the capture is over: nothing is pending

  // Waiting on eager work that has not finished cannot be captured.
  Gate gate;
  CHECK_SR(srLaunchHostFunc(busy.s, [](void* g) { static_cast<Gate*>(g)->pass(); }, &gate));
  CHECK_SR(srEventRecord(pending.e, busy.s));
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_ERR(srStreamWaitEvent(st.s, pending.e, 0), srErrorStreamCaptureIsolation);
  end_failed_capture(st.s, srErrorStreamCaptureInvalidated);
  gate.release();
  CHECK_SR(srStreamSynchronize(busy.s));
  // Once it has finished it is no dependency at all.
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_SR(srStreamWaitEvent(st.s, pending.e, 0));
  launch_add(st.s, buf.p, 4, 1.0f);
  CHECK_SR(srStreamEndCapture(st.s, &graph));
  CHECK_SR(srGraphDestroy(graph));
}

TEST(graph_launch_checks_its_device_and_failures_stop_the_graph) {
  int count = 0;
  CHECK_SR(srGetDeviceCount(&count));
  Stream st;
  std::atomic<int> after{0};
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_SR(srLaunchHostFunc(st.s, [](void*) { srReportAsyncError(srErrorLaunchFailure, "node failed on purpose"); },
                            nullptr));
  CHECK_SR(srLaunchHostFunc(st.s, &count_host_fn, &after));
  srGraph_t graph = nullptr;
  CHECK_SR(srStreamEndCapture(st.s, &graph));
  srGraphExec_t exec = nullptr;
  CHECK_SR(srGraphInstantiate(&exec, graph));
  if (count > 1) {
    CHECK_SR(srSetDevice(1));
    srStream_t other = nullptr;
    CHECK_SR(srDeviceGetDefaultStream(1, &other));
    CHECK_ERR(srGraphLaunch(exec, other), srErrorInvalidValue);
    CHECK_SR(srSetDevice(0));
  }
  CHECK_SR(srGraphLaunch(exec, st.s));
  CHECK_ERR(srStreamSynchronize(st.s), srErrorLaunchFailure);
  CHECK(std::string(srGetLastErrorDetail()).find("on purpose") != std::string::npos);
  CHECK_EQ(after.load(), 0);
  CHECK_ERR(srGetLastError(), srErrorLaunchFailure);
  CHECK_SR(srGraphExecDestroy(exec));
  CHECK_SR(srGraphDestroy(graph));
}

TEST(graph_capture_aborted_from_another_thread_discards_it) {
  Stream st;
  DeviceFloats buf(4);
  std::atomic<int> calls{0};
  CHECK_SR(srStreamBeginCapture(st.s, srStreamCaptureModeGlobal));
  CHECK_SR(srLaunchHostFunc(st.s, &count_host_fn, &calls));
  srError_t aborted = srSuccess;
  std::thread([&] { aborted = srStreamAbortCapture(st.s); }).join();  // an owner going away elsewhere
  CHECK_SR(aborted);
  srStreamCaptureStatus status;
  CHECK_SR(srStreamIsCapturing(st.s, &status));
  CHECK_EQ(status, srStreamCaptureStatusNone);
  CHECK_ERR(srStreamAbortCapture(st.s), srErrorIllegalState);
  // The stream runs work again; what was recorded never runs.
  launch_add(st.s, buf.p, 4, 1.0f);
  CHECK_SR(srStreamSynchronize(st.s));
  CHECK_EQ(buf.read()[0], 1.0f);
  CHECK_EQ(calls.load(), 0);
}
