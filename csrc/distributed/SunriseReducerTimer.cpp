// DDP's timer for sunrise (what CUDA's reducer timer is for CUDA): the
// backward's compute and communication are timed with device events on the
// current stream, so DDP's logging (`_get_ddp_logging_data`: avg forward,
// backward compute and comm times) reports device time, and DDP does not
// warn that it collects time stats for CPU and CUDA only.
#include <torch_sunrise/SunriseEvent.h>
#include <torch_sunrise/SunriseStream.h>

#include <torch/csrc/distributed/c10d/reducer_timer.hpp>

namespace torch_sunrise::distributed {
namespace {

class SunriseReducerTimer final : public c10d::Timer {
 public:
  explicit SunriseReducerTimer(c10::Device device) : device_(device.index()) {}

  void record(Event event) override {
    Timer::record(event);  // the host timestamp, as the base keeps it
    event_ref(event).record(getCurrentSunriseStream(device_));
  }

  std::optional<int64_t> measureDifference(Event start, Event end) override {
    SunriseEvent& from = event_ref(start);
    SunriseEvent& to = event_ref(end);
    if (from.handle() == nullptr || to.handle() == nullptr) return std::nullopt;
    from.synchronize();
    to.synchronize();
    float ms = 0;
    SUNRISE_CHECK(srEventElapsedTime(&ms, from.handle(), to.handle()));
    if (ms < 0) return std::nullopt;  // events of different iterations (see CUDA's timer)
    return static_cast<int64_t>(static_cast<double>(ms) * 1e6);
  }

 private:
  SunriseEvent& event_ref(Event event) {
    switch (event) {
      case Event::kForwardStart:
        return forward_start_;
      case Event::kBackwardComputeStart:
        return backward_compute_start_;
      case Event::kBackwardComputeEnd:
        return backward_compute_end_;
      case Event::kBackwardCommStart:
        return backward_comm_start_;
      case Event::kBackwardCommEnd:
        return backward_comm_end_;
    }
    TORCH_INTERNAL_ASSERT(false, "unknown DDP timer event");
  }

  c10::DeviceIndex device_;
  SunriseEvent forward_start_{srEventDefault};
  SunriseEvent backward_compute_start_{srEventDefault};
  SunriseEvent backward_compute_end_{srEventDefault};
  SunriseEvent backward_comm_start_{srEventDefault};
  SunriseEvent backward_comm_end_{srEventDefault};
};

}  // namespace
}  // namespace torch_sunrise::distributed

namespace c10d {  // where the registry's registerer lives
C10_REGISTER_TYPED_CLASS(TimerRegistry, c10::kPrivateUse1, torch_sunrise::distributed::SunriseReducerTimer)
}  // namespace c10d
