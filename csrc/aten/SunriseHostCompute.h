// Running CPU code over sunrise tensors on the host, in stream order.
//
// The CPU fallback uses it for boxed ops; hand-written kernels use it for ops
// whose CPU kernel has another name (convolution_overrideable is
// at::convolution on the CPU). Constructing one synchronizes the device's
// current stream; in() gives CPU views over device memory (no copy, aliasing
// preserved); out() turns a CPU result into a sunrise tensor: the argument it
// is, a view of the device storage it aliases, or a copy of fresh memory.
#pragma once

#include "kernels/CpuViews.h"

#include <torch_sunrise/SunriseGuard.h>

#include <ATen/core/Tensor.h>

#include <vector>

namespace torch_sunrise::aten {

class HostCompute {
 public:
  explicit HostCompute(c10::Device device);
  HostCompute(const HostCompute&) = delete;  // owns the device guard
  HostCompute& operator=(const HostCompute&) = delete;

  at::Tensor in(const at::Tensor& device_tensor);
  at::Tensor out(const at::Tensor& cpu_result);
  // After a CPU kernel mutated the view of `device_tensor` (in-place, out=),
  // brings reallocated storage and changed metadata back to the device.
  void write_back(const at::Tensor& device_tensor, const at::Tensor& cpu_view);
  c10::Device device() const { return device_; }

 private:
  c10::Device device_;
  SunriseGuard guard_;
  kernels::CpuViewSet views_;
  // (CPU view, the device tensor it was made from): a result that is one of
  // the views maps back to its device tensor (in-place and out= ops).
  std::vector<std::pair<at::Tensor, at::Tensor>> passed_;
};

// A new sunrise tensor holding a copy of a CPU result, with its strides
// (dense ones; others are made contiguous). Synchronous.
at::Tensor copy_result_to_device(const at::Tensor& cpu, c10::Device device);

}  // namespace torch_sunrise::aten
