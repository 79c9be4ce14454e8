// What the hand-written asynchronous ops share: capturing tensor arguments
// at launch, and their CPU views on the device thread.
//
// The pattern of such an op: on the host, check the arguments, allocate the
// outputs with the geometry the CPU kernel gives them, and launch a task that
// runs the CPU kernel over views of device memory and puts its results into
// those outputs. Nothing waits for the device.
#pragma once

#include "kernels/CpuViews.h"
#include "CommonDevice.h"
#include "DeviceParallelism.h"
#include "DtypeCheckedLaunch.h"

#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseLaunch.h>
#include <torch_sunrise/SunriseMathThreads.h>

#include <ATen/native/Resize.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>

#include <optional>
#include <tuple>
#include <vector>

namespace torch_sunrise::aten {

// A tensor with t's metadata on the meta device: meta kernels compute result
// shapes from it without touching memory.
inline at::Tensor meta_like(const at::Tensor& t) {
  return at::empty_strided(t.sizes(), t.strides(), t.options().device(c10::kMeta));
}

// What a launch keeps of its tensor arguments: their bytes and metadata at
// launch (DeferredTensor, CpuViews.h), for work on the current stream.
class Capture {
 public:
  explicit Capture(c10::Device device)
      : stream(getCurrentSunriseStream(device.index())), handle_(stream.handle()) {}
  kernels::DeferredTensor operator()(const at::Tensor& t) const {
    dtypes_.add(t);
    return kernels::DeferredTensor(t, handle_);
  }
  std::optional<kernels::DeferredTensor> operator()(const std::optional<at::Tensor>& t) const {
    dtypes_.add(t);
    return kernels::defer(t, handle_);
  }
  std::vector<kernels::DeferredTensor> operator()(at::TensorList list) const {
    dtypes_.add(at::ITensorListRef(list));
    return kernels::defer(c10::IListRef<at::Tensor>(list), handle_);
  }
  std::vector<std::optional<kernels::DeferredTensor>> operator()(const c10::List<std::optional<at::Tensor>>& list) const {
    std::vector<std::optional<kernels::DeferredTensor>> out;
    out.reserve(list.size());
    for (const std::optional<at::Tensor>& t : list) {
      const bool present = t && t->defined();
      if (present) {
        dtypes_.add(*t);
      } else {
        dtypes_.add(at::Tensor());  // keys as an absent tensor
      }
      out.push_back(present ? kernels::defer(t, handle_) : std::nullopt);
    }
    return out;
  }

  // A value other than the operands' dtypes that decides which CPU kernel
  // runs, and so which dtypes it has (convolution's backend).
  void key_on(uint64_t value) const { dtypes_.add_value(value); }

  // Queues f, whose captures were made by this Capture, on the stream; a dtype
  // error of its kernel is raised here (DtypeCheckedLaunch.h).
  template <typename F>
  void launch(F&& f) const {
    launch_checked(stream, dtypes_.value(), std::forward<F>(f));
  }

  const SunriseStream stream;  // the work's stream

 private:
  srStream_t handle_;  // stream.handle(), looked up once per launch
  mutable DtypeKey dtypes_;  // of the tensors captured so far
};

// CPU views of captured tensors, made on the device thread.
struct Views {
  kernels::CpuViewSet set;
  at::Tensor operator()(const kernels::DeferredTensor& t) { return t.view(set); }
  std::optional<at::Tensor> operator()(const std::optional<kernels::DeferredTensor>& t) { return kernels::view(t, set); }
  std::vector<at::Tensor> operator()(const std::vector<kernels::DeferredTensor>& list) { return kernels::view(list, set); }
};

// Copies the results of a CPU kernel (a tuple of tensors) into the outputs
// allocated for them; undefined outputs (gradients not asked for) are skipped.
template <typename... Results, typename... Outputs>
void put_results(Views& v, const std::tuple<Results...>& results, const Outputs&... outputs) {
  static_assert(sizeof...(Results) == sizeof...(Outputs), "one output per result");
  std::apply(
      [&](const auto&... result) {
        ((outputs.defined() ? static_cast<void>(v(outputs).copy_(result)) : static_cast<void>(0)), ...);
      },
      results);
}

// An empty tensor of `sizes` with t's options, in t's suggested memory format
// (channels-last stays channels-last): how many CPU kernels allocate results.
inline at::Tensor empty_in_suggested_format(const at::Tensor& t, c10::IntArrayRef sizes) {
  return at::empty(sizes, t.options().memory_format(t.suggest_memory_format()));
}

inline c10::Device device_of(std::initializer_list<const at::Tensor*> tensors, const char* op,
                             std::initializer_list<const at::Tensor*> outputs = {}) {
  return common_device(tensors, {}, {}, op, outputs);
}

}  // namespace torch_sunrise::aten
