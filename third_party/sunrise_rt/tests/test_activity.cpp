// Activity tracing: what srActivity* records of each launch, in stream order,
// with the launching thread's correlation id; graph nodes; busy time.
#include "harness.h"

#include <chrono>
#include <thread>
#include <vector>

using namespace srtest;

namespace {

void touch_kernel(const srKernelContext* ctx, void* raw) {
  auto* d = static_cast<float*>(srKernelAddress(*static_cast<float**>(raw)));
  d[ctx->blockIdx.x] += 1.0f;
}

void sleep_host_fn(void* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(ms)));
}

void collect(const srActivityRecord* records, size_t count, void* out) {
  auto* v = static_cast<std::vector<srActivityRecord>*>(out);
  v->insert(v->end(), records, records + count);
}

std::vector<srActivityRecord> flush() {
  std::vector<srActivityRecord> out;
  CHECK_SR(srActivityFlush(&collect, &out));
  return out;
}

}  // namespace

TEST(activity_records_each_launch_in_stream_order) {
  srStream_t s = nullptr;
  CHECK_SR(srStreamCreate(&s));
  float* dev = nullptr;
  CHECK_SR(srMalloc(reinterpret_cast<void**>(&dev), 64 * sizeof(float)));
  std::vector<float> host(64, 1.0f);
  int sleep_ms = 2;
  flush();  // nothing of earlier tests

  CHECK_SR(srActivityEnable(1));
  CHECK_SR(srActivityPushExternalCorrelationId(11));
  CHECK_SR(srMemsetAsync(dev, 0, 64 * sizeof(float), s));
  CHECK_SR(srActivityPushExternalCorrelationId(12));  // nested: the innermost id
  CHECK_SR(srLaunchKernel(&touch_kernel, srDim3{64, 1, 1}, srDim3{1, 1, 1}, &dev, sizeof(dev), s));
  unsigned long long popped = 0;
  CHECK_SR(srActivityPopExternalCorrelationId(&popped));
  CHECK_EQ(popped, 12ull);
  CHECK_SR(srLaunchHostFunc(s, &sleep_host_fn, &sleep_ms));
  CHECK_SR(srActivityPopExternalCorrelationId(nullptr));
  CHECK_SR(srMemcpyAsync(host.data(), dev, 64 * sizeof(float), srMemcpyDefault, s));  // pageable: waits
  CHECK_SR(srActivityEnable(0));
  CHECK_SR(srLaunchHostFunc(s, &sleep_host_fn, &sleep_ms));  // not traced
  CHECK_SR(srStreamSynchronize(s));
  CHECK_EQ(host[5], 1.0f);

  const auto records = flush();
  CHECK_EQ(records.size(), size_t{4});
  const srActivityKind kinds[] = {srActivityKindMemset, srActivityKindKernel, srActivityKindHostFunc,
                                  srActivityKindMemcpy};
  const unsigned long long ids[] = {11, 12, 11, 0};
  for (size_t i = 0; i < records.size(); ++i) {
    const srActivityRecord& r = records[i];
    CHECK_EQ(static_cast<int>(r.kind), static_cast<int>(kinds[i]));
    CHECK_EQ(r.correlationId, ids[i]);
    CHECK(r.stream == s);
    CHECK_EQ(r.device, 0);
    CHECK_EQ(r.inGraph, 0);
    CHECK(r.launchStartNs <= r.launchEndNs && r.launchEndNs <= r.startNs + 1000000);
    CHECK(r.startNs <= r.endNs);
    if (i > 0) CHECK(records[i - 1].endNs <= r.startNs);  // one stream runs one thing at a time
    CHECK(r.launchThread != 0);
  }
  CHECK_EQ(records[1].grid.x, 64u);
  CHECK(records[2].endNs - records[2].startNs >= 2000000);  // the 2 ms host function
  CHECK_EQ(records[0].bytes, 64 * sizeof(float));
  CHECK_EQ(static_cast<int>(records[3].copyKind), static_cast<int>(srMemcpyDeviceToHost));
  CHECK_EQ(srActivityPopExternalCorrelationId(nullptr), srErrorInvalidValue);  // the stack is empty
  CHECK_SR(srFree(dev));
  CHECK_SR(srStreamDestroy(s));
}

TEST(activity_ignores_ids_pushed_before_recording_started) {
  srStream_t s = nullptr;
  CHECK_SR(srStreamCreate(&s));
  int sleep_ms = 0;
  flush();
  CHECK_SR(srActivityPushExternalCorrelationId(5));  // an op that began before the session
  CHECK_SR(srActivityEnable(1));
  CHECK_SR(srLaunchHostFunc(s, &sleep_host_fn, &sleep_ms));
  CHECK_SR(srActivityPushExternalCorrelationId(6));
  CHECK_SR(srLaunchHostFunc(s, &sleep_host_fn, &sleep_ms));
  CHECK_SR(srActivityPopExternalCorrelationId(nullptr));
  CHECK_SR(srActivityPopExternalCorrelationId(nullptr));
  CHECK_SR(srActivityEnable(0));
  CHECK_SR(srStreamSynchronize(s));
  const auto records = flush();
  CHECK_EQ(records.size(), size_t{2});
  CHECK_EQ(records[0].correlationId, 0ull);
  CHECK_EQ(records[1].correlationId, 6ull);
  CHECK_SR(srStreamDestroy(s));
}

TEST(activity_records_the_nodes_of_a_replayed_graph) {
  srStream_t s = nullptr;
  CHECK_SR(srStreamCreate(&s));
  float* dev = nullptr;
  CHECK_SR(srMalloc(reinterpret_cast<void**>(&dev), 8 * sizeof(float)));
  CHECK_SR(srStreamBeginCapture(s, srStreamCaptureModeGlobal));
  CHECK_SR(srMemsetAsync(dev, 0, 8 * sizeof(float), s));
  CHECK_SR(srLaunchKernel(&touch_kernel, srDim3{8, 1, 1}, srDim3{1, 1, 1}, &dev, sizeof(dev), s));
  srGraph_t graph = nullptr;
  CHECK_SR(srStreamEndCapture(s, &graph));
  srGraphExec_t exec = nullptr;
  CHECK_SR(srGraphInstantiate(&exec, graph));
  flush();
  CHECK_SR(srActivityEnable(1));
  CHECK_SR(srActivityPushExternalCorrelationId(7));
  CHECK_SR(srGraphLaunch(exec, s));
  CHECK_SR(srActivityPopExternalCorrelationId(nullptr));
  CHECK_SR(srActivityEnable(0));
  CHECK_SR(srStreamSynchronize(s));
  const auto records = flush();
  CHECK_EQ(records.size(), size_t{2});
  CHECK_EQ(static_cast<int>(records[0].kind), static_cast<int>(srActivityKindMemset));
  CHECK_EQ(static_cast<int>(records[1].kind), static_cast<int>(srActivityKindKernel));
  for (const srActivityRecord& r : records) {
    CHECK_EQ(r.inGraph, 1);
    CHECK_EQ(r.correlationId, 7ull);  // the launch's id, not the capture's
  }
  CHECK_SR(srGraphExecDestroy(exec));
  CHECK_SR(srGraphDestroy(graph));
  CHECK_SR(srFree(dev));
  CHECK_SR(srStreamDestroy(s));
}

TEST(busy_time_counts_work_not_waiting) {
  srStream_t s = nullptr;
  CHECK_SR(srStreamCreate(&s));
  int sleep_ms = 20;
  CHECK_SR(srLaunchHostFunc(s, &sleep_host_fn, &sleep_ms));  // starts the stream's thread
  CHECK_SR(srStreamSynchronize(s));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the thread goes idle: its run is counted
  long long before = 0, after = 0;
  CHECK_SR(srDeviceGetBusyTime(0, &before));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // idle: not busy
  CHECK_SR(srLaunchHostFunc(s, &sleep_host_fn, &sleep_ms));
  CHECK_SR(srStreamSynchronize(s));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK_SR(srDeviceGetBusyTime(0, &after));
  CHECK(after - before >= 20'000'000);
  CHECK(after - before < 45'000'000);
  CHECK_EQ(srDeviceGetBusyTime(0, nullptr), srErrorInvalidValue);
  CHECK_EQ(srDeviceGetBusyTime(99, &after), srErrorInvalidDevice);
  CHECK_SR(srStreamDestroy(s));
}
