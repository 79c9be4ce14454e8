// Scaled dot-product attention with CPU eager's own kernel.
//
// scaled_dot_product_attention asks a per-device DispatchStub which fused
// kernel to use, and a device without an entry gets the math composite
// (matmul, softmax, matmul): close to the CPU's result but not its bits. CPU
// eager picks its flash-attention kernel whenever the arguments allow it, so
// sunrise registers CPU's choice and runs that kernel (forward and backward)
// as device work: same results, one fused task instead of a dozen ops.
// (The stub's call links against libtorch_cpu because CMakeLists.txt declares
// the CPU variants torch was built with: SUNRISE_DISPATCH_STUB_DEFINITIONS.)

#include "SunriseAsyncSupport.h"

#include <ATen/OpMathType.h>
#include <ATen/native/transformers/attention.h>
#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>
#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

// A CPU tensor with the metadata of `t` (sizes and strides, symbolic under
// dynamic shapes; dtype; requires_grad) and no data: CPU's choice reads no
// data, and `t` may have none to read (a FakeTensor, while torch.compile traces).
at::Tensor cpu_metadata_twin(const at::Tensor& t) {
  if (!t.device().is_privateuseone()) return t;
  c10::Storage empty(c10::Storage::use_byte_size_t(), 0, c10::GetAllocator(c10::DeviceType::CPU), /*resizable=*/false);
  at::Tensor twin = at::detail::make_tensor<c10::TensorImpl>(std::move(empty), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                              t.dtype());
  twin.unsafeGetTensorImpl()->set_sizes_and_strides(t.sym_sizes(), t.sym_strides());
  if (t.requires_grad()) twin.set_requires_grad(true);
  return twin;
}

// CPU's choice, made from the operands' metadata (requires_grad included: the
// flash kernel has no gradient for a mask, so a mask that requires one sends
// CPU eager to the math path).
int64_t fused_sdp_choice(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                         const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal,
                         std::optional<double> scale, bool enable_gqa) {
  std::optional<at::Tensor> mask;
  if (attn_mask && attn_mask->defined()) mask = cpu_metadata_twin(*attn_mask);
  return at::native::_fused_sdp_choice_stub(c10::DeviceType::CPU, cpu_metadata_twin(query), cpu_metadata_twin(key),
                                            cpu_metadata_twin(value), mask, dropout_p, is_causal, scale, enable_gqa);
}

// The argument checks of the CPU kernel that a caller can trip, raised here
// rather than later from the device.
void check_qkv(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value) {
  TORCH_CHECK(query.dim() == 4 && key.dim() == 4 && value.dim() == 4,
              "scaled_dot_product_attention_flash_attention: Accept only 4 dims inputs shape of {B, H, T, K}");
  TORCH_CHECK(query.scalar_type() == key.scalar_type() && query.scalar_type() == value.scalar_type(),
              "scaled_dot_product_attention_flash_attention: Q/K/V should have the same data type");
  TORCH_CHECK(query.size(3) == key.size(3) && query.size(3) == value.size(3),
              "scaled_dot_product_attention_flash_attention: Q/K/V should have the same head size");
}

// {B, H, T, E} laid out as {B, T, H, E}: how the CPU kernel allocates the
// logsumexp and the gradients.
at::Tensor heads_inner(at::IntArrayRef sizes, const at::TensorOptions& options) {
  std::vector<int64_t> bthe(sizes.begin(), sizes.end());
  std::swap(bthe[1], bthe[2]);
  return at::empty(bthe, options).transpose(1, 2);
}

std::tuple<at::Tensor, at::Tensor> flash_attention_forward(const at::Tensor& query, const at::Tensor& key,
                                                           const at::Tensor& value, double dropout_p, bool is_causal,
                                                           const std::optional<at::Tensor>& attn_mask,
                                                           std::optional<double> scale) {
  const c10::Device device = common_device({&query, &key, &value}, {&attn_mask}, {},
                                                       "aten::_scaled_dot_product_flash_attention_for_cpu");
  const SunriseGuard guard(device);
  check_qkv(query, key, value);
  at::Tensor out = at::empty_like(query);
  at::Tensor logsumexp = heads_inner({query.size(0), query.size(1), query.size(2)},
                                     query.options().dtype(at::toOpMathType(query.scalar_type())));
  const Capture c(device);
  c.launch([query = c(query), key = c(key), value = c(value), dropout_p, is_causal,
                         attn_mask = c(attn_mask), scale, out = c(out), logsumexp = c(logsumexp)] {
    Views v;
    const at::Tensor q = v(query), k = v(key);
    const SerialMathScope serial(serial_attention(q, k, /*products=*/2));
    put_results(v,
                at::_scaled_dot_product_flash_attention_for_cpu(q, k, v(value), dropout_p, is_causal, v(attn_mask),
                                                                scale),
                out, logsumexp);
  });
  return {out, logsumexp};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> flash_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
    const at::Tensor& out, const at::Tensor& logsumexp, double dropout_p, bool is_causal,
    const std::optional<at::Tensor>& attn_mask, std::optional<double> scale) {
  const c10::Device device = common_device({&grad_out, &query, &key, &value, &out, &logsumexp},
                                                       {&attn_mask}, {},
                                                       "aten::_scaled_dot_product_flash_attention_for_cpu_backward");
  const SunriseGuard guard(device);
  check_qkv(query, key, value);
  at::Tensor grad_q = heads_inner(query.sizes(), query.options());
  at::Tensor grad_k = heads_inner(key.sizes(), key.options());
  at::Tensor grad_v = heads_inner(value.sizes(), value.options());
  const Capture c(device);
  c.launch([grad_out = c(grad_out), query = c(query), key = c(key), value = c(value), out = c(out),
                         logsumexp = c(logsumexp), dropout_p, is_causal, attn_mask = c(attn_mask), scale,
                         grad_q = c(grad_q), grad_k = c(grad_k), grad_v = c(grad_v)] {
    Views v;
    const at::Tensor q = v(query), k = v(key);
    const SerialMathScope serial(serial_attention(q, k, /*products=*/5));
    put_results(v,
                at::_scaled_dot_product_flash_attention_for_cpu_backward(
                    v(grad_out), q, k, v(value), v(out), v(logsumexp), dropout_p, is_causal, v(attn_mask), scale),
                grad_q, grad_k, grad_v);
  });
  return {grad_q, grad_k, grad_v};
}

}  // namespace

}  // namespace torch_sunrise::aten

namespace at::native {
REGISTER_PRIVATEUSE1_DISPATCH(_fused_sdp_choice_stub, &torch_sunrise::aten::fused_sdp_choice)
}  // namespace at::native

namespace torch_sunrise::aten {

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_scaled_dot_product_flash_attention_for_cpu", flash_attention_forward);
  m.impl("_scaled_dot_product_flash_attention_for_cpu_backward", flash_attention_backward);
}

}  // namespace torch_sunrise::aten
