// Batch, group and layer normalization, as device work: the host allocates the
// results with the CPU kernel's geometry (batch_norm_cpu, group_norm), the
// device runs that kernel over views of device memory. Running statistics are
// updated in place there, in stream order.
#include "SunriseAsyncSupport.h"

#include <ATen/native/cpu/mixed_data_type.h>
#include <ATen/OpMathType.h>
#include <ATen/native/layer_norm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/_batch_norm_with_update.h>
#include <ATen/ops/_native_batch_norm_legit.h>
#include <ATen/ops/batch_norm_backward.h>
#include <ATen/ops/native_batch_norm.h>
#include <ATen/ops/native_batch_norm_backward.h>
#include <ATen/ops/native_group_norm.h>
#include <ATen/ops/native_group_norm_backward.h>
#include <ATen/ops/native_layer_norm.h>
#include <ATen/ops/native_layer_norm_backward.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

const at::Tensor& or_undefined(const std::optional<at::Tensor>& t) {
  static const at::Tensor undefined;
  return t ? *t : undefined;
}

// The dtype of the per-channel results: float for a reduced-precision input
// with float parameters or statistics (the CPU kernel's mixed mode), else the
// input's.
template <typename... Params>
c10::ScalarType channel_dtype(const at::Tensor& input, const Params&... params) {
  if (!at::native::is_mixed_type(input, params...)) return input.scalar_type();
  at::native::check_mixed_data_type(input, params...);
  return c10::ScalarType::Float;
}

int64_t channels_of(const at::Tensor& input, const char* op) {
  TORCH_CHECK(input.dim() >= 2, op, ": expected an input with at least 2 dimensions (batch, channels, ...), got ",
              input.dim());
  return input.size(1);
}

// The forward entry points of batch norm, all one computation on the CPU.
enum class Forward { Native, Legit, LegitNoStats, WithUpdate };

// Outputs as batch_norm_cpu makes them; the device runs the CPU op `which`.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(Forward which, const at::Tensor& input,
                                                       const std::optional<at::Tensor>& weight,
                                                       const std::optional<at::Tensor>& bias,
                                                       const std::optional<at::Tensor>& running_mean,
                                                       const std::optional<at::Tensor>& running_var, bool training,
                                                       double momentum, double eps, const char* op) {
  const c10::Device device =
      common_device({&input}, {&weight, &bias, &running_mean, &running_var}, {}, op);
  const SunriseGuard guard(device);
  const int64_t channels = channels_of(input, op);
  const c10::ScalarType stat_dtype = channel_dtype(input, or_undefined(weight), or_undefined(bias),
                                                   or_undefined(running_mean), or_undefined(running_var));
  at::Tensor out = empty_in_suggested_format(input, input.sizes());
  // Evaluation keeps no batch statistics: the CPU kernel returns empty ones.
  const int64_t stat_size = training ? channels : 0;
  at::Tensor save_mean = at::empty({stat_size}, input.options().dtype(stat_dtype));
  at::Tensor save_invstd = at::empty({stat_size}, input.options().dtype(stat_dtype));
  const Capture c(device);
  c.launch([which, input = c(input), weight = c(weight), bias = c(bias), running_mean = c(running_mean),
                         running_var = c(running_var), training, momentum, eps, out = c(out),
                         save_mean = c(save_mean), save_invstd = c(save_invstd)] {
    Views v;
    std::tuple<at::Tensor, at::Tensor, at::Tensor> r;
    switch (which) {
      case Forward::Native:
        r = at::native_batch_norm(v(input), v(weight), v(bias), v(running_mean), v(running_var), training, momentum,
                                  eps);
        break;
      case Forward::Legit: {
        at::Tensor mean = v(*running_mean), var = v(*running_var);
        r = at::_native_batch_norm_legit(v(input), v(weight), v(bias), mean, var, training, momentum, eps);
        break;
      }
      case Forward::LegitNoStats:
        r = at::_native_batch_norm_legit(v(input), v(weight), v(bias), training, momentum, eps);
        break;
      case Forward::WithUpdate: {
        at::Tensor mean = v(*running_mean), var = v(*running_var);
        auto [o, m, s, reserve] = at::_batch_norm_with_update(v(input), v(weight), v(bias), mean, var, momentum, eps);
        r = {o, m, s};
        break;
      }
    }
    put_results(v, r, out, save_mean, save_invstd);
  });
  return {out, save_mean, save_invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_batch_norm(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var, bool training,
    double momentum, double eps) {
  return forward(Forward::Native, input, weight, bias, running_mean, running_var, training, momentum, eps,
                 "aten::native_batch_norm");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_batch_norm_legit(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    at::Tensor& running_mean, at::Tensor& running_var, bool training, double momentum, double eps) {
  return forward(Forward::Legit, input, weight, bias, running_mean, running_var, training, momentum, eps,
                 "aten::_native_batch_norm_legit");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_batch_norm_legit_no_stats(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    bool training, double momentum, double eps) {
  return forward(Forward::LegitNoStats, input, weight, bias, std::nullopt, std::nullopt, training, momentum, eps,
                 "aten::_native_batch_norm_legit.no_stats");
}

// Training with running statistics; the fourth result is the reserve space
// cuDNN would keep, empty on the CPU.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> batch_norm_with_update(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    at::Tensor& running_mean, at::Tensor& running_var, double momentum, double eps) {
  auto [out, mean, invstd] = forward(Forward::WithUpdate, input, weight, bias, running_mean, running_var,
                                     /*training=*/true, momentum, eps, "aten::_batch_norm_with_update");
  return {out, mean, invstd, at::empty({0}, input.options().dtype(at::kByte))};
}

// The backward entry points: native_batch_norm_backward, and batch_norm_backward
// (of _batch_norm_with_update), which also takes the reserve space.
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& save_mean, const std::optional<at::Tensor>& save_invstd, bool train, double eps,
    std::array<bool, 3> output_mask, const at::Tensor* reserve, const char* op) {
  const c10::Device device = common_device(
      {&grad_out, &input}, {&weight, &running_mean, &running_var, &save_mean, &save_invstd}, {}, op);
  const SunriseGuard guard(device);
  const int64_t channels = channels_of(input, op);
  const c10::ScalarType param_dtype =
      channel_dtype(input, or_undefined(weight), or_undefined(running_mean), or_undefined(running_var),
                    or_undefined(save_mean), or_undefined(save_invstd));
  at::Tensor grad_input = output_mask[0]
                              ? empty_in_suggested_format(input, input.sizes())
                              : at::Tensor();
  at::Tensor grad_weight = output_mask[1] ? at::empty({channels}, input.options().dtype(param_dtype)) : at::Tensor();
  at::Tensor grad_bias = output_mask[2] ? at::empty({channels}, input.options().dtype(param_dtype)) : at::Tensor();
  const Capture c(device);
  c.launch([grad_out = c(grad_out), input = c(input), weight = c(weight), running_mean = c(running_mean),
                         running_var = c(running_var), save_mean = c(save_mean), save_invstd = c(save_invstd), train,
                         eps, output_mask, reserve = reserve ? std::optional(c(*reserve)) : std::nullopt,
                         grad_input = c(grad_input), grad_weight = c(grad_weight), grad_bias = c(grad_bias)] {
    Views v;
    put_results(v,
                reserve ? at::batch_norm_backward(v(grad_out), v(input), v(*weight), v(running_mean), v(running_var),
                                                  v(save_mean), v(save_invstd), train, eps, output_mask, v(*reserve))
                        : at::native_batch_norm_backward(v(grad_out), v(input), v(weight), v(running_mean),
                                                         v(running_var), v(save_mean), v(save_invstd), train, eps,
                                                         output_mask),
                grad_input, grad_weight, grad_bias);
  });
  return {grad_input, grad_weight, grad_bias};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_batch_norm_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& save_mean, const std::optional<at::Tensor>& save_invstd, bool train, double eps,
    std::array<bool, 3> output_mask) {
  return backward(grad_out, input, weight, running_mean, running_var, save_mean, save_invstd, train, eps, output_mask,
                  nullptr, "aten::native_batch_norm_backward");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& save_mean, const std::optional<at::Tensor>& save_var, bool update, double eps,
    std::array<bool, 3> output_mask, const at::Tensor& reserve) {
  return backward(grad_out, input, weight, running_mean, running_var, save_mean, save_var, update, eps, output_mask,
                  &reserve, "aten::batch_norm_backward");
}

// ------------------------------------------------------------------ group norm
std::tuple<at::Tensor, at::Tensor, at::Tensor> native_group_norm(const at::Tensor& input,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 const std::optional<at::Tensor>& bias, int64_t n,
                                                                 int64_t c, int64_t hxw, int64_t group, double eps) {
  const c10::Device device = common_device({&input}, {&weight, &bias}, {}, "aten::native_group_norm");
  const SunriseGuard guard(device);
  {
    // CPU's own check (its words too), made before its kernel starts.
    const at::Tensor& X = input;
    const auto memory_format = X.suggest_memory_format();
    TORCH_CHECK(X.is_contiguous(memory_format));
  }
  const c10::ScalarType stat_dtype = channel_dtype(input, or_undefined(weight), or_undefined(bias));
  at::Tensor y = empty_in_suggested_format(input, input.sizes());
  at::Tensor mean = at::empty({n, group}, input.options().dtype(stat_dtype));
  at::Tensor rstd = at::empty({n, group}, input.options().dtype(stat_dtype));
  const Capture cap(device);
  cap.launch([input = cap(input), weight = cap(weight), bias = cap(bias), n, c, hxw, group, eps,
                           y = cap(y), mean = cap(mean), rstd = cap(rstd)] {
    Views v;
    put_results(v, at::native_group_norm(v(input), v(weight), v(bias), n, c, hxw, group, eps), y, mean, rstd);
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_group_norm_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& rstd,
    const std::optional<at::Tensor>& weight, int64_t n, int64_t c, int64_t hxw, int64_t group,
    std::array<bool, 3> output_mask) {
  const c10::Device device = common_device({&grad_out, &input, &mean, &rstd}, {&weight}, {},
                                                       "aten::native_group_norm_backward");
  const SunriseGuard guard(device);
  const c10::ScalarType param_dtype = channel_dtype(input, or_undefined(weight));
  at::Tensor grad_input = output_mask[0]
                              ? empty_in_suggested_format(input, input.sizes())
                              : at::Tensor();
  at::Tensor grad_weight = output_mask[1] ? at::empty({c}, input.options().dtype(param_dtype)) : at::Tensor();
  at::Tensor grad_bias = output_mask[2] ? at::empty({c}, input.options().dtype(param_dtype)) : at::Tensor();
  const Capture cap(device);
  cap.launch([grad_out = cap(grad_out), input = cap(input), mean = cap(mean), rstd = cap(rstd),
                           weight = cap(weight), n, c, hxw, group, output_mask, grad_input = cap(grad_input),
                           grad_weight = cap(grad_weight), grad_bias = cap(grad_bias)] {
    Views v;
    put_results(v,
                at::native_group_norm_backward(v(grad_out), v(input), v(mean), v(rstd), v(weight), n, c, hxw, group,
                                               output_mask),
                grad_input, grad_weight, grad_bias);
  });
  return {grad_input, grad_weight, grad_bias};
}

// ------------------------------------------------------------- layer norm
// The CPU kernel's outputs, predicted here (layer_norm_cpu): Y contiguous like
// the input; mean and rstd shaped like the input over the leading dims with
// ones over the normalized ones, in float when a reduced-precision input comes
// with float32 parameters.
std::tuple<at::Tensor, at::Tensor, at::Tensor> native_layer_norm(const at::Tensor& input,
                                                                 c10::IntArrayRef normalized_shape,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 const std::optional<at::Tensor>& bias, double eps) {
  const at::Tensor no_tensor;
  const at::Tensor& w = weight ? *weight : no_tensor;
  const at::Tensor& b = bias ? *bias : no_tensor;
  const c10::Device device = common_device({&input}, {&weight, &bias}, {}, "aten::native_layer_norm");
  const SunriseGuard guard(device);
  at::native::_check_layer_norm_inputs(input, normalized_shape, w, b);
  const bool mixed = at::native::is_mixed_type(input, w, b);
  if (mixed) at::native::check_mixed_data_type(input, w, b);
  const c10::ScalarType stat_dtype = mixed ? at::toOpMathType(input.scalar_type()) : input.scalar_type();
  const size_t axis = input.dim() - normalized_shape.size();
  std::vector<int64_t> stat_shape(input.sizes().begin(), input.sizes().begin() + static_cast<ptrdiff_t>(axis));
  stat_shape.resize(static_cast<size_t>(input.dim()), 1);
  at::Tensor y = at::empty(input.sizes(), input.options());
  at::Tensor mean = at::empty(stat_shape, input.options().dtype(stat_dtype));
  at::Tensor rstd = at::empty(stat_shape, input.options().dtype(stat_dtype));
  const bool serial = serial_rows({&input, &y});
  const Capture c(device);
  c.launch([input = c(input), shape = normalized_shape.vec(), weight = c(weight), bias = c(bias), eps,
                  y = c(y), mean = c(mean), rstd = c(rstd), serial] {
    Views v;
    const SerialMathScope one_thread(serial);
    put_results(v, at::native_layer_norm(v(input), shape, v(weight), v(bias), eps), y, mean, rstd);
  });
  return {y, mean, rstd};
}

// Gradients come back like the tensors they belong to (layer_norm_backward_cpu),
// only where output_mask asks for them.
std::tuple<at::Tensor, at::Tensor, at::Tensor> native_layer_norm_backward(
    const at::Tensor& grad_out, const at::Tensor& input, c10::IntArrayRef normalized_shape, const at::Tensor& mean,
    const at::Tensor& rstd, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    std::array<bool, 3> output_mask) {
  const c10::Device device = common_device({&grad_out, &input, &mean, &rstd}, {&weight, &bias}, {},
                                                       "aten::native_layer_norm_backward");
  const SunriseGuard guard(device);
  const at::Tensor no_tensor;
  at::native::_check_layer_norm_inputs(input, normalized_shape, weight ? *weight : no_tensor,
                                       bias ? *bias : no_tensor);
  auto like = [](bool wanted, const std::optional<at::Tensor>& t) {
    return wanted && t && t->defined() ? at::empty(t->sizes(), t->options()) : at::Tensor();
  };
  at::Tensor dx = output_mask[0] ? at::empty(input.sizes(), input.options()) : at::Tensor();
  at::Tensor dw = like(output_mask[1], weight);
  at::Tensor db = like(output_mask[2], bias);
  const Capture c(device);
  c.launch([grad_out = c(grad_out), input = c(input), shape = normalized_shape.vec(), mean = c(mean),
                  rstd = c(rstd), weight = c(weight), bias = c(bias), output_mask, dx = c(dx), dw = c(dw), db = c(db)] {
    Views v;
    put_results(v,
                at::native_layer_norm_backward(v(grad_out), v(input), shape, v(mean), v(rstd), v(weight), v(bias),
                                               output_mask),
                dx, dw, db);
  });
  return {dx, dw, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("native_batch_norm", native_batch_norm);
  m.impl("_native_batch_norm_legit", native_batch_norm_legit);
  m.impl("_native_batch_norm_legit.no_stats", native_batch_norm_legit_no_stats);
  m.impl("_batch_norm_with_update", batch_norm_with_update);
  m.impl("native_batch_norm_backward", native_batch_norm_backward);
  m.impl("batch_norm_backward", batch_norm_backward);
  m.impl("native_group_norm", native_group_norm);
  m.impl("native_group_norm_backward", native_group_norm_backward);
  m.impl("native_layer_norm", native_layer_norm);
  m.impl("native_layer_norm_backward", native_layer_norm_backward);
}

}  // namespace torch_sunrise::aten
