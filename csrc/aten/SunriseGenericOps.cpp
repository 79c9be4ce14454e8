// Operators whose ATen implementation is device-generic although it is
// registered per backend (CPU, CUDA and MPS share it): it only builds a view
// or calls other operators. Registered for sunrise as they are, they run
// natively through the ops they call instead of through the CPU fallback.
#include <ATen/core/Tensor.h>
#include <ATen/ops/hardtanh_native.h>
#include <ATen/ops/rsub_native.h>
#include <ATen/ops/unfold_native.h>
#include <ATen/ops/view_as_complex_native.h>
#include <ATen/ops/view_as_real_native.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

// rsub.Tensor: other - alpha * self, through sub.
at::Tensor rsub(const at::Tensor& self, const at::Tensor& other, const at::Scalar& alpha) {
  return at::native::rsub(self, other, alpha);
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("rsub.Tensor", rsub);
  // hardtanh (and relu6, which calls it) is clamp.
  m.impl("hardtanh", TORCH_FN(at::native::hardtanh));
  m.impl("hardtanh.out", TORCH_FN(at::native::hardtanh_out));
  m.impl("hardtanh_", TORCH_FN(at::native::hardtanh_));
  m.impl("view_as_real", TORCH_FN(at::native::view_as_real));
  m.impl("view_as_complex", TORCH_FN(at::native::view_as_complex));
  m.impl("unfold", TORCH_FN(at::native::unfold));
}

}  // namespace torch_sunrise::aten
