// Fused LSTM / GRU cells. For CUDA-like devices (PrivateUse1 included) PyTorch's
// RNN code calls _thnn_fused_{lstm,gru}_cell, which have no CPU kernel, so the
// fallback cannot serve them. These compose the cell from ordinary ops on the
// device. The workspace layout is private to these forward/backward pairs:
//   LSTM: [i, f, g, o] activated gates (N x 4H)
//   GRU:  [r, z, n, hx, hn] (N x 5H), hn = hidden new-gate input incl. bias
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

at::Tensor add_bias(at::Tensor gates, const std::optional<at::Tensor>& bias) {
  return bias && bias->defined() ? gates + *bias : gates;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_lstm_cell(const at::Tensor& input_gates,
                                                               const at::Tensor& hidden_gates, const at::Tensor& cx,
                                                               const std::optional<at::Tensor>& input_bias,
                                                               const std::optional<at::Tensor>& hidden_bias) {
  const at::Tensor gates = add_bias(add_bias(input_gates + hidden_gates, input_bias), hidden_bias);
  auto chunks = gates.chunk(4, 1);
  const at::Tensor i = at::sigmoid(chunks[0]);
  const at::Tensor f = at::sigmoid(chunks[1]);
  const at::Tensor g = at::tanh(chunks[2]);
  const at::Tensor o = at::sigmoid(chunks[3]);
  at::Tensor cy = f * cx + i * g;
  at::Tensor hy = o * at::tanh(cy);
  return {hy, cy, at::cat({i, f, g, o}, 1)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_lstm_cell_backward_impl(
    const std::optional<at::Tensor>& grad_hy, const std::optional<at::Tensor>& grad_cy, const at::Tensor& cx,
    const at::Tensor& cy, const at::Tensor& workspace, bool has_bias) {
  auto w = workspace.chunk(4, 1);
  const at::Tensor &i = w[0], &f = w[1], &g = w[2], &o = w[3];
  const at::Tensor tanh_cy = at::tanh(cy);
  const bool have_h = grad_hy && grad_hy->defined();
  const bool have_c = grad_cy && grad_cy->defined();
  const at::Tensor ghy = have_h ? *grad_hy : at::zeros_like(cy);
  at::Tensor gcy = ghy * o * (1 - tanh_cy * tanh_cy);
  if (have_c) gcy = gcy + *grad_cy;
  const at::Tensor gi = gcy * g * i * (1 - i);
  const at::Tensor gf = gcy * cx * f * (1 - f);
  const at::Tensor gg = gcy * i * (1 - g * g);
  const at::Tensor go = ghy * tanh_cy * o * (1 - o);
  at::Tensor grad_gates = at::cat({gi, gf, gg, go}, 1);
  at::Tensor grad_cx = gcy * f;
  at::Tensor grad_bias = has_bias ? grad_gates.sum(0) : at::Tensor();
  return {grad_gates, grad_cx, grad_bias};
}

std::tuple<at::Tensor, at::Tensor> fused_gru_cell(const at::Tensor& input_gates, const at::Tensor& hidden_gates,
                                                  const at::Tensor& hx, const std::optional<at::Tensor>& input_bias,
                                                  const std::optional<at::Tensor>& hidden_bias) {
  auto ig = add_bias(input_gates, input_bias).chunk(3, 1);
  auto hg = add_bias(hidden_gates, hidden_bias).chunk(3, 1);
  const at::Tensor r = at::sigmoid(ig[0] + hg[0]);
  const at::Tensor z = at::sigmoid(ig[1] + hg[1]);
  const at::Tensor hn = hg[2];
  const at::Tensor n = at::tanh(ig[2] + r * hn);
  at::Tensor hy = n + z * (hx - n);
  return {hy, at::cat({r, z, n, hx, hn}, 1)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_gru_cell_backward(
    const at::Tensor& grad_hy, const at::Tensor& workspace, bool has_bias) {
  auto w = workspace.chunk(5, 1);
  const at::Tensor &r = w[0], &z = w[1], &n = w[2], &hx = w[3], &hn = w[4];
  const at::Tensor gz = grad_hy * (hx - n) * z * (1 - z);
  const at::Tensor gn = grad_hy * (1 - z) * (1 - n * n);  // w.r.t. the new gate's pre-activation
  const at::Tensor gr = gn * hn * r * (1 - r);
  at::Tensor grad_input_gates = at::cat({gr, gz, gn}, 1);
  at::Tensor grad_hidden_gates = at::cat({gr, gz, gn * r}, 1);
  at::Tensor grad_hx = grad_hy * z;
  at::Tensor grad_input_bias = has_bias ? grad_input_gates.sum(0) : at::Tensor();
  at::Tensor grad_hidden_bias = has_bias ? grad_hidden_gates.sum(0) : at::Tensor();
  return {grad_input_gates, grad_hidden_gates, grad_hx, grad_input_bias, grad_hidden_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_thnn_fused_lstm_cell", fused_lstm_cell);
  m.impl("_thnn_fused_lstm_cell_backward_impl", fused_lstm_cell_backward_impl);
  m.impl("_thnn_fused_gru_cell", fused_gru_cell);
  m.impl("_thnn_fused_gru_cell_backward", fused_gru_cell_backward);
}

}  // namespace torch_sunrise::aten
