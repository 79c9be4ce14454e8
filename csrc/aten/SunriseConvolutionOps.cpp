// Convolutions. On a PrivateUse1 device PyTorch routes every convolution to
// convolution_overrideable / convolution_backward_overrideable, whose CPU
// versions only raise, so the generic fallback cannot serve them: these run
// ATen's CPU convolution (oneDNN / im2col) over device memory instead.
#include "SunriseHostCompute.h"

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

at::Tensor convolution_overrideable(const at::Tensor& input, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed,
                                    c10::IntArrayRef output_padding, int64_t groups) {
  HostCompute host(input.device());
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const std::optional<at::Tensor> cpu_bias = bias && bias->defined() ? std::optional(host.in(*bias)) : std::nullopt;
  return host.out(at::convolution(host.in(input), host.in(weight), cpu_bias, stride, padding, dilation, transposed,
                                  output_padding, groups));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward_overrideable(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed, c10::IntArrayRef output_padding,
    int64_t groups, std::array<bool, 3> output_mask) {
  HostCompute host(input.device());
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  // The bias has one entry per output channel.
  const int64_t channels = transposed ? weight.size(1) * groups : weight.size(0);
  auto [gi, gw, gb] = at::convolution_backward(host.in(grad_output), host.in(input), host.in(weight),
                                               std::vector<int64_t>{channels}, stride, padding, dilation, transposed,
                                               output_padding, groups, output_mask);
  return {host.out(gi), host.out(gw), host.out(gb)};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("convolution_overrideable", convolution_overrideable);
  m.impl("convolution_backward_overrideable", convolution_backward_overrideable);
}

}  // namespace torch_sunrise::aten
