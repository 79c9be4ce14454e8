// logical_not / and / or / xor as device work. Their functional and in-place
// forms are composites over the out= form, so that is the one registered: the
// host sizes `out` (broadcasting, as TensorIterator would) and the device runs
// the CPU kernel, whose own iterator then does the type promotion and casts.
#include "SunriseAsyncSupport.h"

#include <ATen/ExpandUtils.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/logical_or.h>
#include <ATen/ops/logical_xor.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

at::Tensor& logical_not_out(const at::Tensor& self, at::Tensor& out) {
  const c10::Device device = device_of({&self}, "aten::logical_not.out", {&out});
  const SunriseGuard guard(device);
  at::native::resize_output(out, self.sizes());
  const Capture c(device);
  c.launch([self = c(self), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::logical_not_out(o, v(self));
  });
  return out;
}

enum class Binary { And, Or, Xor };

template <Binary Op>
at::Tensor& logical_binary_out(const at::Tensor& self, const at::Tensor& other, at::Tensor& out) {
  constexpr const char* name = Op == Binary::And ? "aten::logical_and.out"
                               : Op == Binary::Or ? "aten::logical_or.out"
                                                  : "aten::logical_xor.out";
  const c10::Device device = device_of({&self, &other}, name, {&out});
  const SunriseGuard guard(device);
  const std::vector<int64_t> shape = at::infer_size(self.sizes(), other.sizes());
  // An output that is also an input (the in-place form) is never resized.
  TORCH_CHECK(!(out.is_same(self) || out.is_same(other)) || out.sizes() == c10::IntArrayRef(shape),
              "output with shape ", out.sizes(), " doesn't match the broadcast shape ", c10::IntArrayRef(shape));
  at::native::resize_output(out, shape);
  const Capture c(device);
  c.launch([self = c(self), other = c(other), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    if constexpr (Op == Binary::And) at::logical_and_out(o, v(self), v(other));
    else if constexpr (Op == Binary::Or) at::logical_or_out(o, v(self), v(other));
    else at::logical_xor_out(o, v(self), v(other));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("logical_not.out", logical_not_out);
  m.impl("logical_and.out", logical_binary_out<Binary::And>);
  m.impl("logical_or.out", logical_binary_out<Binary::Or>);
  m.impl("logical_xor.out", logical_binary_out<Binary::Xor>);
}

}  // namespace torch_sunrise::aten
