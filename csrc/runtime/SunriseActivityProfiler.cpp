// The sunrise device in torch.profiler: a Kineto activity profiler that turns
// the runtime's activity records (srActivity*, sunrise_rt.h) into trace events.
//
// Kineto pushes the correlation id of each profiled op while it runs; the
// session forwards it to the runtime, which stamps every launch with it. After
// the run each record becomes two events, as CUPTI's do on CUDA: the launch
// call on the launching thread (srLaunchKernel, ...) and the device work on a
// lane per device and stream, both linked to the op, with a flow arrow from the
// launch to the work. torch.profiler attributes the device work's time to the
// op (self_device_time_total) through that link.
//
// Registered with PrivateUse1ProfilerRegistry, which hands it to Kineto for
// `ProfilerActivity.PrivateUse1` (and the legacy `use_device="sunrise"`).
#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseStream.h>

#include <torch/csrc/profiler/standalone/privateuse1_profiler.h>

#include <GenericTraceActivity.h>
#include <IActivityProfiler.h>
#include <libkineto.h>
#include <output_base.h>

#include <fmt/format.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace torch_sunrise::profiler {
namespace {

using libkineto::ActivityType;

const std::set<ActivityType>& device_activity_types() {
  static const std::set<ActivityType> types{ActivityType::CONCURRENT_KERNEL, ActivityType::GPU_MEMCPY,
                                            ActivityType::GPU_MEMSET, ActivityType::PRIVATEUSE1_RUNTIME};
  return types;
}

const char* copy_direction(srMemcpyKind kind) {
  switch (kind) {
    case srMemcpyHostToDevice: return "HtoD (Host -> Device)";
    case srMemcpyDeviceToHost: return "DtoH (Device -> Host)";
    case srMemcpyDeviceToDevice: return "DtoD (Device -> Device)";
    case srMemcpyHostToHost: return "HtoH (Host -> Host)";
    default: return "(Default)";
  }
}

const char* launch_call(srActivityKind kind) {
  switch (kind) {
    case srActivityKindKernel: return "srLaunchKernel";
    case srActivityKindHostFunc: return "srLaunchHostFunc";
    case srActivityKindMemcpy: return "srMemcpyAsync";
    case srActivityKindMemset: return "srMemsetAsync";
  }
  return "srLaunch";
}

// A trace lane per stream: torch's stream id for the streams torch hands out.
class StreamLanes {
 public:
  // The devices that ran recorded work have their stream pools already.
  explicit StreamLanes(const std::vector<srActivityRecord>& records) {
    std::set<int> devices;
    for (const srActivityRecord& r : records) devices.insert(r.device);
    for (int d : devices) {
      for (c10::StreamId id = 0; id <= 2 * kStreamsPerPool; ++id) {
        const SunriseStream s(c10::Stream(c10::Stream::UNSAFE,
                                          c10::Device(c10::DeviceType::PrivateUse1, static_cast<c10::DeviceIndex>(d)), id));
        ids_.emplace(s.handle(), id);
      }
    }
  }
  // Streams made outside torch (the raw runtime API) get ids past torch's.
  int32_t lane(srStream_t stream) {
    auto it = ids_.find(stream);
    if (it != ids_.end()) return static_cast<int32_t>(it->second);
    const auto id = static_cast<c10::StreamId>(2 * kStreamsPerPool + 1 + static_cast<int>(ids_.size()));
    ids_.emplace(stream, id);
    return static_cast<int32_t>(id);
  }

 private:
  std::unordered_map<srStream_t, c10::StreamId> ids_;
};

// Lets this thread wait for the device while a capture is underway.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { SUNRISE_CHECK(srThreadExchangeStreamCaptureMode(&previous_)); }
  ~RelaxedCaptureMode() { SUNRISE_WARN(srThreadExchangeStreamCaptureMode(&previous_)); }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  srStreamCaptureMode previous_ = srStreamCaptureModeRelaxed;
};

void collect_records(const srActivityRecord* records, size_t count, void* user_data) {
  auto* out = static_cast<std::vector<srActivityRecord>*>(user_data);
  out->insert(out->end(), records, records + count);
}

class SunriseProfilerSession final : public libkineto::IActivityProfilerSession {
 public:
  explicit SunriseProfilerSession(std::set<ActivityType> types)
      : types_(std::move(types)), buffer_(std::make_unique<libkineto::CpuTraceBuffer>()) {}

  void start() override {
    // Records left from work launched during an earlier session are not ours.
    std::vector<srActivityRecord> stale;
    SUNRISE_WARN(srActivityFlush(&collect_records, &stale));
    SUNRISE_CHECK(srActivityEnable(1));
    status_ = libkineto::TraceStatus::RECORDING;
  }

  void stop() override {
    SUNRISE_CHECK(srActivityEnable(0));
    // What was launched while recording is recorded when it runs: wait for it,
    // in relaxed capture mode, so that a capture underway (on this thread or
    // another) is left alone, as the work it records never runs.
    const RelaxedCaptureMode relaxed;
    for (c10::DeviceIndex d = 0; d < device_count(); ++d) {
      const SunriseGuard guard(d);
      SUNRISE_WARN(srDeviceSynchronize());
    }
    SUNRISE_CHECK(srActivityFlush(&collect_records, &records_));
    status_ = libkineto::TraceStatus::PROCESSING;
  }

  std::vector<std::string> errors() override { return {}; }

  // Ops push ids, user scopes (record_function, compiled kernels, the CPU
  // fallback) push "user" ids; both go on the one runtime stack, so device
  // work is linked to the innermost of them.
  // A pop with nothing pushed (an op that began before the session) is ignored.
  void pushCorrelationId(uint64_t id) override { (void)srActivityPushExternalCorrelationId(id); }
  void popCorrelationId() override { (void)srActivityPopExternalCorrelationId(nullptr); }
  void pushUserCorrelationId(uint64_t id) override { pushCorrelationId(id); }
  void popUserCorrelationId() override { popCorrelationId(); }

  void processTrace(libkineto::ActivityLogger& logger) override {
    processTrace(logger, [](int32_t) -> const libkineto::ITraceActivity* { return nullptr; }, 0, 0);
  }

  void processTrace(libkineto::ActivityLogger& logger, libkineto::getLinkedActivityCallback linked_op,
                    int64_t window_start, int64_t window_end) override {
    StreamLanes lanes(records_);
    const bool want_runtime = types_.count(ActivityType::PRIVATEUSE1_RUNTIME) != 0;
    buffer_->span = libkineto::TraceSpan(window_start, window_end, "sunrise");
    for (const srActivityRecord& r : records_) {
      const ActivityType type = r.kind == srActivityKindMemcpy   ? ActivityType::GPU_MEMCPY
                                : r.kind == srActivityKindMemset ? ActivityType::GPU_MEMSET
                                                                 : ActivityType::CONCURRENT_KERNEL;
      if (types_.count(type) == 0) continue;
      const libkineto::ITraceActivity* op =
          r.correlationId != 0 ? linked_op(static_cast<int32_t>(r.correlationId)) : nullptr;
      const uint32_t flow_id = ++flow_ids_;
      const int32_t lane = lanes.lane(r.stream);
      const bool launch_event = want_runtime && !r.inGraph;
      if (launch_event) {
        auto& launch = add_activity(ActivityType::PRIVATEUSE1_RUNTIME, launch_call(r.kind));
        launch.startTime = r.launchStartNs;
        launch.endTime = std::max(r.launchEndNs, r.launchStartNs + 1);
        launch.device = static_cast<int32_t>(::getpid());
        launch.resource = static_cast<int32_t>(r.launchThread);
        launch.threadId = static_cast<int32_t>(r.launchThread);
        launch.id = static_cast<int32_t>(r.correlationId);
        launch.linked = op;
        launch.flow.id = flow_id;
        launch.flow.type = libkineto::kLinkAsyncCpuGpu;
        launch.flow.start = 1;
        launch.addMetadata("correlation", r.correlationId);
        launch.log(logger);
      }
      auto& work = add_activity(type, device_work_name(r, op));
      work.startTime = r.startNs;
      work.endTime = std::max(r.endNs, r.startNs + 1);
      work.device = r.device;
      work.resource = lane;
      work.threadId = lane;
      work.id = static_cast<int32_t>(r.correlationId);
      work.linked = op;
      if (launch_event) {
        work.flow.id = flow_id;
        work.flow.type = libkineto::kLinkAsyncCpuGpu;
        work.flow.start = 0;
      }
      work.addMetadata("device", r.device);
      work.addMetadata("stream", lane);
      work.addMetadata("correlation", r.correlationId);
      if (r.kind == srActivityKindKernel) {
        work.addMetadataQuoted("grid", fmt::format("[{}, {}, {}]", r.grid.x, r.grid.y, r.grid.z));
      }
      if (r.kind == srActivityKindMemcpy || r.kind == srActivityKindMemset) work.addMetadata("bytes", r.bytes);
      if (r.inGraph) work.addMetadata("graph node", 1);
      lanes_seen_.insert({r.device, lane});
      work.log(logger);
    }
    records_.clear();
  }

  // The trace's "deviceProperties", with the keys CUDA traces use.
  std::string getDeviceProperties() override {
    std::string out;
    for (c10::DeviceIndex d = 0; d < device_count(); ++d) {
      srDeviceProp p{};
      if (srGetDeviceProperties(&p, d) != srSuccess) continue;
      if (!out.empty()) out += ",\n";
      out += fmt::format(
          R"JSON(    {{"id": {}, "name": "{}", "totalGlobalMem": {}, "computeMajor": {}, "computeMinor": {}, )JSON"
          R"JSON("maxThreadsPerBlock": {}, "warpSize": {}, "sharedMemPerBlock": {}, "numSms": {}}})JSON",
          d, p.name, p.totalGlobalMem, p.major, p.minor, p.maxThreadsPerBlock, p.warpSize, p.sharedMemPerBlock,
          p.multiProcessorCount);
    }
    return out;
  }

  std::unique_ptr<libkineto::DeviceInfo> getDeviceInfo() override {
    return std::make_unique<libkineto::DeviceInfo>(0, 0, "sunrise 0", "sunrise 0");
  }

  std::vector<libkineto::ResourceInfo> getResourceInfos() override {
    std::vector<libkineto::ResourceInfo> out;
    for (const auto& [device, lane] : lanes_seen_) {
      out.push_back(libkineto::ResourceInfo{lane, lane, device, fmt::format("sunrise:{} stream {}", device, lane)});
    }
    return out;
  }

  // The buffer moves whole: its activities point at its span.
  std::unique_ptr<libkineto::CpuTraceBuffer> getTraceBuffer() override { return std::move(buffer_); }

 private:
  libkineto::GenericTraceActivity& add_activity(ActivityType type, std::string name) {
    buffer_->emplace_activity(buffer_->span, type, std::move(name));
    return *buffer_->activities.back();
  }

  // Device work is named after the op that launched it ("aten::mm"), as CUDA
  // kernels carry their kernel's name.
  static std::string device_work_name(const srActivityRecord& r, const libkineto::ITraceActivity* op) {
    switch (r.kind) {
      case srActivityKindMemcpy:
        return fmt::format("Memcpy {}", copy_direction(r.copyKind));
      case srActivityKindMemset:
        return "Memset (Device)";
      case srActivityKindKernel:
        return fmt::format("sunrise::kernel<{}>", op ? op->name() : "?");
      case srActivityKindHostFunc:
        return fmt::format("sunrise::task<{}>", op ? op->name() : "?");
    }
    return "sunrise::work";
  }

  const std::set<ActivityType> types_;
  std::vector<srActivityRecord> records_;
  std::unique_ptr<libkineto::CpuTraceBuffer> buffer_;
  std::set<std::pair<int32_t, int32_t>> lanes_seen_;
  uint32_t flow_ids_ = 0;
};

class SunriseActivityProfiler final : public libkineto::IActivityProfiler {
 public:
  const std::string& name() const override { return name_; }
  const std::set<ActivityType>& availableActivities() const override { return device_activity_types(); }

  std::unique_ptr<libkineto::IActivityProfilerSession> configure(const std::set<ActivityType>& activity_types,
                                                                 const libkineto::Config& /*config*/) override {
    std::set<ActivityType> wanted;
    for (ActivityType t : activity_types) {
      if (device_activity_types().count(t) != 0) wanted.insert(t);
    }
    // A CPU-only trace has no device lanes: no session, and launches stay untraced.
    if (wanted.count(ActivityType::CONCURRENT_KERNEL) == 0) return nullptr;
    return std::make_unique<SunriseProfilerSession>(std::move(wanted));
  }

  std::unique_ptr<libkineto::IActivityProfilerSession> configure(int64_t /*ts_ms*/, int64_t /*duration_ms*/,
                                                                 const std::set<ActivityType>& activity_types,
                                                                 const libkineto::Config& config) override {
    return configure(activity_types, config);
  }

 private:
  const std::string name_{"sunrise"};
};

REGISTER_PRIVATEUSE1_PROFILER(SunriseActivityProfiler);

}  // namespace
}  // namespace torch_sunrise::profiler
