// Ops of vision models without a structured kernel, as device work: adaptive
// average pooling, hardswish and the spatial negative log-likelihood loss.
// The host allocates results with the CPU kernel's geometry, the device runs
// that kernel over views of device memory.
#include "SunriseAsyncSupport.h"

#include <ATen/ops/_adaptive_avg_pool2d.h>
#include <ATen/ops/_adaptive_avg_pool2d_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/hardswish.h>
#include <ATen/ops/hardswish_backward.h>
#include <ATen/ops/nll_loss2d_backward.h>
#include <ATen/ops/nll_loss2d_forward.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

// ----------------------------------------------------- adaptive average pool
at::Tensor adaptive_avg_pool2d(const at::Tensor& self, c10::IntArrayRef output_size) {
  const c10::Device device = device_of({&self}, "aten::_adaptive_avg_pool2d");
  const SunriseGuard guard(device);
  TORCH_CHECK(output_size.size() == 2, "adaptive_avg_pool2d: output_size must be 2");
  TORCH_CHECK(self.dim() == 3 || self.dim() == 4,
              "adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got ", self.sizes());
  std::vector<int64_t> sizes(self.sizes().begin(), self.sizes().end() - 2);
  sizes.insert(sizes.end(), output_size.begin(), output_size.end());
  at::Tensor out = empty_in_suggested_format(self, sizes);
  const Capture c(device);
  c.launch([self = c(self), output_size = output_size.vec(), out = c(out)] {
    Views v;
    v(out).copy_(at::_adaptive_avg_pool2d(v(self), output_size));
  });
  return out;
}

at::Tensor adaptive_avg_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& self) {
  const c10::Device device = device_of({&grad_output, &self}, "aten::_adaptive_avg_pool2d_backward");
  const SunriseGuard guard(device);
  at::Tensor grad_input = empty_in_suggested_format(self, self.sizes());
  const Capture c(device);
  c.launch([grad_output = c(grad_output), self = c(self), grad_input = c(grad_input)] {
    Views v;
    v(grad_input).copy_(at::_adaptive_avg_pool2d_backward(v(grad_output), v(self)));
  });
  return grad_input;
}

// ------------------------------------------------------------------ hardswish
at::Tensor hardswish(const at::Tensor& self) {
  const c10::Device device = device_of({&self}, "aten::hardswish");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty_like(self);
  const Capture c(device);
  c.launch([self = c(self), out = c(out)] {
    Views v;
    v(out).copy_(at::hardswish(v(self)));
  });
  return out;
}

at::Tensor& hardswish_(at::Tensor& self) {
  const c10::Device device = device_of({&self}, "aten::hardswish_");
  const SunriseGuard guard(device);
  const Capture c(device);
  c.launch([self = c(self)] {
    Views v;
    at::Tensor view = v(self);
    at::hardswish_(view);
  });
  return self;
}

at::Tensor hardswish_backward(const at::Tensor& grad_output, const at::Tensor& self) {
  const c10::Device device = device_of({&grad_output, &self}, "aten::hardswish_backward");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty_like(self);
  const Capture c(device);
  c.launch([grad_output = c(grad_output), self = c(self), out = c(out)] {
    Views v;
    v(out).copy_(at::hardswish_backward(v(grad_output), v(self)));
  });
  return out;
}

// ----------------------------------------------------- spatial nll loss (2d)
std::tuple<at::Tensor, at::Tensor> nll_loss2d_forward(const at::Tensor& self, const at::Tensor& target,
                                                      const std::optional<at::Tensor>& weight, int64_t reduction,
                                                      int64_t ignore_index) {
  const c10::Device device = structured::common_device({&self, &target}, {&weight}, {}, "aten::nll_loss2d_forward");
  const SunriseGuard guard(device);
  TORCH_CHECK(self.dim() == 4 && target.dim() == 3,
              "only batches of spatial inputs supported (4D tensors), but got input of dimension: ", self.dim(),
              " and target of dimension: ", target.dim());
  at::Tensor output = reduction == at::Reduction::None
                          ? at::empty({self.size(0), self.size(2), self.size(3)}, self.options())
                          : at::empty({}, self.options());
  at::Tensor total_weight = at::empty({}, self.options());
  const Capture c(device);
  c.launch([self = c(self), target = c(target), weight = c(weight), reduction, ignore_index,
                         output = c(output), total_weight = c(total_weight)] {
    Views v;
    put_results(v, at::nll_loss2d_forward(v(self), v(target), v(weight), reduction, ignore_index), output,
                total_weight);
  });
  return {output, total_weight};
}

at::Tensor nll_loss2d_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                               const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                               const at::Tensor& total_weight) {
  const c10::Device device = structured::common_device({&grad_output, &self, &target, &total_weight}, {&weight}, {},
                                                       "aten::nll_loss2d_backward");
  const SunriseGuard guard(device);
  at::Tensor grad_input = at::empty(self.sizes(), self.options());
  const Capture c(device);
  c.launch([grad_output = c(grad_output), self = c(self), target = c(target), weight = c(weight),
                         reduction, ignore_index, total_weight = c(total_weight), grad_input = c(grad_input)] {
    Views v;
    v(grad_input).copy_(at::nll_loss2d_backward(v(grad_output), v(self), v(target), v(weight), reduction, ignore_index,
                                                v(total_weight)));
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_adaptive_avg_pool2d", adaptive_avg_pool2d);
  m.impl("_adaptive_avg_pool2d_backward", adaptive_avg_pool2d_backward);
  m.impl("hardswish", hardswish);
  m.impl("hardswish_", hardswish_);
  m.impl("hardswish_backward", hardswish_backward);
  m.impl("nll_loss2d_forward", nll_loss2d_forward);
  m.impl("nll_loss2d_backward", nll_loss2d_backward);
}

}  // namespace torch_sunrise::aten
