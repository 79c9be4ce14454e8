// Ops of vision models without a structured kernel, as device work: adaptive
// average pooling, hardswish, pixel (un)shuffle and the spatial negative
// log-likelihood loss; max_pool1d's dtype rule.
// The host allocates results with the CPU kernel's geometry, the device runs
// that kernel over views of device memory.
#include "SunriseAsyncSupport.h"

#include <ATen/Dispatch.h>
#include <ATen/core/grad_mode.h>
#include <ATen/native/PixelShuffle.h>

#include <ATen/ops/_adaptive_avg_pool2d.h>
#include <ATen/ops/_adaptive_avg_pool2d_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/hardswish.h>
#include <ATen/ops/hardswish_backward.h>
#include <ATen/ops/max_pool1d_with_indices.h>
#include <ATen/ops/pixel_shuffle.h>
#include <ATen/ops/pixel_unshuffle.h>
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
  for (const int64_t i : {self.dim() - 2, self.dim() - 1}) {
    TORCH_CHECK(self.size(i) > 0,
                "adaptive_avg_pool2d(): Expected input to have non-zero size for non-batch dimensions, but input has "
                "sizes ", self.sizes(), " with dimension ", i, " being empty");
  }
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
  const c10::Device device = common_device({&self, &target}, {&weight}, {}, "aten::nll_loss2d_forward");
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
  const c10::Device device = common_device({&grad_output, &self, &target, &total_weight}, {&weight}, {},
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

// ------------------------------------------------------- pixel (un)shuffle
// CPU's kernels, not the view-based composite other devices get: CPU's dtypes
// (no complex32 or unsigned 16-64 bit) and its layout (the input's suggested
// memory format).
template <bool Shuffle>
at::Tensor pixel_shuffle(const at::Tensor& self, int64_t factor) {
  const c10::Device device = device_of({&self}, Shuffle ? "aten::pixel_shuffle" : "aten::pixel_unshuffle");
  const SunriseGuard guard(device);
  if constexpr (Shuffle) {
    at::native::check_pixel_shuffle_shapes(self, factor);
  } else {
    at::native::check_pixel_unshuffle_shapes(self, factor);
  }
  std::vector<int64_t> sizes(self.sizes().begin(), self.sizes().end() - 3);
  if constexpr (Shuffle) {
    sizes.insert(sizes.end(), {self.size(-3) / factor / factor, self.size(-2) * factor, self.size(-1) * factor});
  } else {
    sizes.insert(sizes.end(), {self.size(-3) * factor * factor, self.size(-2) / factor, self.size(-1) / factor});
  }
  at::Tensor out = empty_in_suggested_format(self, sizes);
  const Capture c(device);
  c.launch([self = c(self), factor, out = c(out)] {
    Views v;
    v(out).copy_(Shuffle ? at::pixel_shuffle(v(self), factor) : at::pixel_unshuffle(v(self), factor));
  });
  return out;
}

// ----------------------------------------------------------------- max_pool1d
// A composite: on CPU, a call that needs no gradient takes CPU's own kernel,
// which has floating dtypes only; every other device pools through
// max_pool1d_with_indices, which takes integers too. Sunrise refuses what CPU
// refuses, with CPU's error, and pools as other devices do.
at::Tensor max_pool1d(const at::Tensor& self, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                      c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  if (!(self.requires_grad() && at::GradMode::is_enabled()) && !self._fw_grad(/*level=*/0).defined()) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, self.scalar_type(), "max_pool1d_impl", [] {});
  }
  return std::get<0>(at::max_pool1d_with_indices(self, kernel_size, stride, padding, dilation, ceil_mode));
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, AutogradPrivateUse1, m) {
  m.impl("max_pool1d", max_pool1d);
}

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("pixel_shuffle", pixel_shuffle<true>);
  m.impl("pixel_unshuffle", pixel_shuffle<false>);
  m.impl("_adaptive_avg_pool2d", adaptive_avg_pool2d);
  m.impl("_adaptive_avg_pool2d_backward", adaptive_avg_pool2d_backward);
  m.impl("hardswish", hardswish);
  m.impl("hardswish_", hardswish_);
  m.impl("hardswish_backward", hardswish_backward);
  m.impl("nll_loss2d_forward", nll_loss2d_forward);
  m.impl("nll_loss2d_backward", nll_loss2d_backward);
}

}  // namespace torch_sunrise::aten
