// Autocast for sunrise, with CUDA's policy: PyTorch's own op lists
// (ATen/autocast_mode.h) registered for the AutocastPrivateUse1 key.
//   lower_precision_fp: matmul-class ops and convolutions run in the autocast
//                       dtype (bfloat16 or float16);
//   fp32:               precision-sensitive ops (exp/log/pow, norms, losses,
//                       softmax-like reductions) run in float32;
//   promote:            mixed-input ops run in the widest input type.
// Ops not listed fall through to the backend unchanged.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

using at::Tensor;  // the op lists' signatures name Tensor unqualified
using c10::IntArrayRef;
using c10::Scalar;
using c10::ScalarType;

Tensor binary_cross_entropy_banned(const Tensor&, const Tensor&, const std::optional<Tensor>&, int64_t) {
  TORCH_CHECK(false,
              "torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast. Many models use "
              "a sigmoid layer right before the binary cross entropy layer; combine the two with "
              "torch.nn.functional.binary_cross_entropy_with_logits or torch.nn.BCEWithLogitsLoss, which are safe to "
              "autocast.");
}

}  // namespace

TORCH_LIBRARY_IMPL(_, AutocastPrivateUse1, m) { m.fallback(torch::CppFunction::makeFallthrough()); }

TORCH_LIBRARY_IMPL(aten, AutocastPrivateUse1, m) {
#define SUNRISE_LOWER_PRECISION(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, lower_precision_fp)
#define SUNRISE_FP32(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, fp32)
#define SUNRISE_FP32_SET_OPT_DTYPE(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, fp32_set_opt_dtype)
#define SUNRISE_PROMOTE(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, promote)
  AT_FORALL_LOWER_PRECISION_FP(SUNRISE_LOWER_PRECISION)
  AT_FORALL_FP32(SUNRISE_FP32)
  AT_FORALL_FP32_SET_OPT_DTYPE(SUNRISE_FP32_SET_OPT_DTYPE)
  AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE(KERNEL_DIFFERENT_REDISPATCH_SIGNATURE_PRIVATEUSEONE)
  AT_FORALL_PROMOTE(SUNRISE_PROMOTE)
#undef SUNRISE_LOWER_PRECISION
#undef SUNRISE_FP32
#undef SUNRISE_FP32_SET_OPT_DTYPE
#undef SUNRISE_PROMOTE
  // As on CUDA: binary_cross_entropy is unsafe under autocast; say what to use.
  m.impl(TORCH_SELECTIVE_NAME("aten::binary_cross_entropy"), TORCH_FN(binary_cross_entropy_banned));
}

}  // namespace torch_sunrise::aten
