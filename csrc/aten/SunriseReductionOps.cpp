// Reductions without a structured kernel, as device work: var / std with a
// correction, dot / vdot, max / min over all elements, and torch.equal. The
// result's shape and dtype are known on the host.
#include "SunriseAsyncSupport.h"

#include <torch_sunrise/SunriseHostWait.h>

#include <ATen/OpMathType.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/max.h>
#include <ATen/ops/min.h>
#include <ATen/ops/std.h>
#include <ATen/ops/sum_meta_dispatch.h>
#include <ATen/ops/var.h>
#include <ATen/ops/vdot.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

// var / std with a correction: the result has the shape of any reduction over
// `dim` (taken from sum's C++ meta function; the dispatcher's Meta kernel is
// Python) and the real dtype of the input.
template <bool Std>
at::Tensor var_or_std(const at::Tensor& self, at::OptionalIntArrayRef dim, const std::optional<c10::Scalar>& correction,
                      bool keepdim) {
  TORCH_CHECK(at::isFloatingType(self.scalar_type()) || at::isComplexType(self.scalar_type()),
              "std and var only support floating point and complex dtypes");
  const c10::Device device = device_of({&self}, Std ? "aten::std.correction" : "aten::var.correction");
  const SunriseGuard guard(device);
  const at::Tensor shape = at::meta::sum(meta_like(self), dim, keepdim);
  at::Tensor out = at::empty(shape.sizes(), self.options().dtype(c10::toRealValueType(self.scalar_type())));
  std::optional<std::vector<int64_t>> dims;
  if (dim) dims = dim->vec();
  const Capture c(device);
  c.launch([self = c(self), dims, correction, keepdim, out = c(out)] {
    Views v;
    const at::OptionalIntArrayRef d = dims ? at::OptionalIntArrayRef(*dims) : at::OptionalIntArrayRef(std::nullopt);
    v(out).copy_(Std ? at::std(v(self), d, correction, keepdim) : at::var(v(self), d, correction, keepdim));
  });
  return out;
}

// ---------------------------------------------------------- dot, vdot, flip
// The checks of the CPU kernels (dot_check), raised at the call.
void check_dot(const at::Tensor& self, const at::Tensor& other, const char* op) {
  TORCH_CHECK(self.dim() == 1 && other.dim() == 1, "1D tensors expected, but got ", self.dim(), "D and ",
              other.dim(), "D tensors");
  TORCH_CHECK(self.scalar_type() == other.scalar_type(), op,
              " : expected both vectors to have same dtype, but found ", self.scalar_type(), " and ",
              other.scalar_type());
  TORCH_CHECK(self.numel() == other.numel(), "inconsistent tensor size, expected tensor [", self.numel(),
              "] and src [", other.numel(), "] to have the same number of elements, but got ", self.numel(), " and ",
              other.numel(), " elements respectively");
}

template <bool Conjugate>
at::Tensor dot_product(const at::Tensor& self, const at::Tensor& other) {
  const c10::Device device = device_of({&self, &other}, Conjugate ? "aten::vdot" : "aten::dot");
  check_dot(self, other, Conjugate ? "vdot" : "dot");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty({}, self.options());
  const Capture c(device);
  c.launch([self = c(self), other = c(other), out = c(out)] {
    Views v;
    v(out).copy_(Conjugate ? at::vdot(v(self), v(other)) : at::dot(v(self), v(other)));
  });
  return out;
}

template <bool IsMax>
at::Tensor full_reduction(const at::Tensor& self) {
  TORCH_CHECK(self.numel() > 0, IsMax ? "max" : "min",
              "(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the "
              "'dim' argument.");
  const c10::Device device = device_of({&self}, IsMax ? "aten::max" : "aten::min");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty({}, self.options());
  const Capture c(device);
  c.launch([self = c(self), out = c(out)] {
    Views v;
    v(out).copy_(IsMax ? at::max(v(self)) : at::min(v(self)));
  });
  return out;
}

// torch.equal answers on the host, so it waits for the device, as on CUDA.
bool equal(const at::Tensor& self, const at::Tensor& other) {
  TORCH_CHECK(self.device() == other.device(), "Cannot compare two tensors on different devices. Got: ",
              self.device(), " and ", other.device());
  const c10::Device device = device_of({&self, &other}, "aten::equal");
  const SunriseGuard guard(device);
  auto result = std::make_shared<bool>(false);
  const Capture c(device);
  before_host_wait(c.stream, "torch.equal (which answers on the host)", "move it out of the captured region");
  c.launch([self = c(self), other = c(other), result] {
    Views v;
    *result = at::equal(v(self), v(other));
  });
  c.stream.synchronize();
  return *result;
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("equal", equal);
  m.impl("dot", dot_product<false>);
  m.impl("vdot", dot_product<true>);
  m.impl("var.correction", var_or_std<false>);
  m.impl("std.correction", var_or_std<true>);
  m.impl("max", full_reduction<true>);
  m.impl("min", full_reduction<false>);
}

}  // namespace torch_sunrise::aten
