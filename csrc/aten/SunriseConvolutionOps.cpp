// Convolutions, as device work. On a PrivateUse1 device PyTorch routes every
// convolution to convolution_overrideable / convolution_backward_overrideable
// (after its own argument checks), whose CPU versions only raise. Here the
// host allocates the results as the CPU kernel would lay them out, and the
// device runs ATen's CPU convolution (oneDNN, or im2col and BLAS) over views
// of device memory: the same backend choice and the same bits as CPU eager.
#include "SunriseAsyncSupport.h"

#include <ATen/native/ConvUtils.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

// The backend the CPU kernel picks for these operands, and the memory format
// of its results (channels-last in, channels-last out for oneDNN). The
// backend also decides which dtypes run (the dilated kernels have no uint8),
// so it keys the launch's dtype check. CPU views made on the host only carry
// the metadata the choice reads.
struct CpuChoice {
  at::native::ConvBackend backend;
  at::MemoryFormat format;
};

CpuChoice cpu_choice(const at::Tensor& input, const at::Tensor& weight, c10::OptionalIntArrayRef bias_sizes,
                     c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed,
                     c10::IntArrayRef output_padding, int64_t groups) {
  const at::Tensor input_v = kernels::cpu_view(input);
  const at::Tensor weight_v = kernels::cpu_view(weight);
  const at::native::ConvBackend backend = at::native::select_conv_backend(
      input_v, weight_v, std::nullopt, c10::fromIntArrayRefSlow(stride), c10::fromIntArrayRefSlow(padding),
      c10::fromIntArrayRefSlow(dilation), transposed, c10::fromIntArrayRefSlow(output_padding), groups,
      bias_sizes ? at::OptionalSymIntArrayRef(c10::fromIntArrayRefSlow(*bias_sizes)) : std::nullopt);
  return {backend, at::native::_determine_backend_memory_format(input_v, weight_v, backend)};
}

at::Tensor convolution_overrideable(const at::Tensor& input, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed,
                                    c10::IntArrayRef output_padding, int64_t groups) {
  const c10::Device device =
      common_device({&input, &weight}, {&bias}, {}, "aten::convolution_overrideable");
  const SunriseGuard guard(device);
  const bool has_bias = bias && bias->defined();
  const std::vector<int64_t> sizes =
      transposed ? at::native::conv_input_size(input.sizes(), weight.sizes(), padding, output_padding, stride,
                                               dilation, groups)
                 : at::native::conv_output_size(input.sizes(), weight.sizes(), padding, stride, dilation);
  const CpuChoice cpu = cpu_choice(input, weight, has_bias ? c10::OptionalIntArrayRef(bias->sizes()) : std::nullopt,
                                   stride, padding, dilation, transposed, output_padding, groups);
  at::Tensor out = at::empty(sizes, input.options().memory_format(cpu.format));
  const Capture c(device);
  c.key_on(static_cast<uint64_t>(cpu.backend));
  c.launch([input = c(input), weight = c(weight), bias = c(has_bias ? bias : std::nullopt),
                         stride = stride.vec(), padding = padding.vec(), dilation = dilation.vec(), transposed,
                         output_padding = output_padding.vec(), groups, out = c(out)] {
    Views v;
    v(out).copy_(at::convolution(v(input), v(weight), v(bias), stride, padding, dilation, transposed, output_padding,
                                 groups));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward_overrideable(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool transposed, c10::IntArrayRef output_padding,
    int64_t groups, std::array<bool, 3> output_mask) {
  const c10::Device device = common_device({&grad_output, &input, &weight}, {}, {},
                                                       "aten::convolution_backward_overrideable");
  const SunriseGuard guard(device);
  // The bias has one entry per output channel.
  const int64_t channels = transposed ? weight.size(1) * groups : weight.size(0);
  const std::vector<int64_t> bias_sizes{channels};
  const CpuChoice cpu =
      cpu_choice(input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups);
  at::Tensor grad_input =
      output_mask[0] ? at::empty(input.sizes(), input.options().memory_format(cpu.format)) : at::Tensor();
  at::Tensor grad_weight =
      output_mask[1] ? at::empty(weight.sizes(), weight.options().memory_format(cpu.format)) : at::Tensor();
  at::Tensor grad_bias = output_mask[2] ? at::empty(bias_sizes, grad_output.options()) : at::Tensor();
  const Capture c(device);
  c.key_on(static_cast<uint64_t>(cpu.backend));
  c.launch([grad_output = c(grad_output), input = c(input), weight = c(weight), bias_sizes,
                         stride = stride.vec(), padding = padding.vec(), dilation = dilation.vec(), transposed,
                         output_padding = output_padding.vec(), groups, output_mask, grad_input = c(grad_input),
                         grad_weight = c(grad_weight), grad_bias = c(grad_bias)] {
    Views v;
    put_results(v,
                at::convolution_backward(v(grad_output), v(input), v(weight), bias_sizes, stride, padding, dilation,
                                         transposed, output_padding, groups, output_mask),
                grad_input, grad_weight, grad_bias);
  });
  return {grad_input, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("convolution_overrideable", convolution_overrideable);
  m.impl("convolution_backward_overrideable", convolution_backward_overrideable);
}

}  // namespace torch_sunrise::aten
