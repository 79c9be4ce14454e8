// Random ops on the device: registration and argument checks (as CPU's);
// the Philox kernels are in csrc/kernels/RandomKernels.cpp.
#include "kernels/RandomKernels.h"

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/native/DistributionTemplates.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/view_as_real.h>
#include <torch/library.h>

#include <limits>

namespace torch_sunrise::aten {
namespace {

using Gen = std::optional<at::Generator>;

at::Tensor& uniform_(at::Tensor& self, double from, double to, Gen gen) {
  TORCH_CHECK(from <= to, "uniform_ expects to return a [from, to) range, but found from=", from, " > to=", to);
  TORCH_CHECK(std::isfinite(to - from), "uniform_ expects to-from <= std::numeric_limits<", self.scalar_type(),
              ">::max(), but found to=", to, " and from=", from, " which result in to-from to exceed the limit");
  // Complex tensors draw real and imaginary parts independently, as on CPU.
  kernels::uniform_(self.is_complex() ? at::view_as_real(self) : self, from, to, std::move(gen));
  return self;
}

at::Tensor& normal_(at::Tensor& self, double mean, double std, Gen gen) {
  TORCH_CHECK(std >= 0.0, "normal expects std >= 0.0, but found std ", std);
  // Complex normal: each part gets half the variance, as on CPU.
  if (self.is_complex()) {
    kernels::normal_(at::view_as_real(self), mean, std / std::sqrt(2.0), std::move(gen));
  } else {
    kernels::normal_(self, mean, std, std::move(gen));
  }
  return self;
}

// The largest value random_ may produce for the dtype, inclusive.
uint64_t max_inclusive(c10::ScalarType t) {
  switch (t) {
    case at::kBool: return 1;
    case at::kByte: return std::numeric_limits<uint8_t>::max();
    case at::kChar: return std::numeric_limits<int8_t>::max();
    case at::kShort: return std::numeric_limits<int16_t>::max();
    case at::kInt: return std::numeric_limits<int32_t>::max();
    case at::kLong: return std::numeric_limits<int64_t>::max();
    case at::kHalf: return uint64_t{1} << 11;  // integers exactly representable
    case at::kBFloat16: return uint64_t{1} << 8;
    case at::kFloat: return uint64_t{1} << 24;
    case at::kDouble: return uint64_t{1} << 53;
    default: TORCH_CHECK(false, "random_ is not implemented for ", t);
  }
}

at::Tensor& random_from(at::Tensor& self, int64_t from, std::optional<int64_t> to, Gen gen) {
  uint64_t range = 0;
  if (to) {
    TORCH_CHECK(from < *to, "random_ expects 'from' to be less than 'to', but got from=", from, " >= to_exclusive=", *to);
    at::native::templates::check_from_to_in_range(from, *to - 1, self.dtype());
    range = static_cast<uint64_t>(*to) - static_cast<uint64_t>(from);
  } else {
    const uint64_t top = max_inclusive(self.scalar_type());
    TORCH_CHECK(from >= 0 || at::isFloatingType(self.scalar_type()) || at::isSignedType(self.scalar_type()),
                "random_ from=", from, " is out of range for ", self.scalar_type());
    range = top - static_cast<uint64_t>(from) + 1;  // wraps to 0 = the full 2^64 range
  }
  kernels::random_(self, from, range, std::move(gen));
  return self;
}

at::Tensor& random_to(at::Tensor& self, int64_t to, Gen gen) {
  TORCH_CHECK(to > 0, "random_ expects 'from' to be less than 'to', but got from=0 >= to_exclusive=", to);
  return random_from(self, 0, to, std::move(gen));
}

at::Tensor& random_default(at::Tensor& self, Gen gen) {
  kernels::random_(self, 0, max_inclusive(self.scalar_type()) + 1, std::move(gen));
  return self;
}

at::Tensor& bernoulli_float(at::Tensor& self, double p, Gen gen) {
  TORCH_CHECK(0 <= p && p <= 1, "bernoulli_ expects p to be in [0, 1], but got p=", p);
  kernels::bernoulli_(self, p, std::move(gen));
  return self;
}

// The dtypes CPU's kernel takes, refused with its words (a NotImplementedError);
// like its dispatch, not for an empty self.
void check_bernoulli_dtypes(const at::Tensor& self, const at::Tensor& p) {
  if (self.numel() == 0) return;
  AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kBFloat16, at::kHalf, self.scalar_type(), "bernoulli_tensor_cpu_self_", [] {});
  if (p.scalar_type() != at::kDouble) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, p.scalar_type(), "bernoulli_tensor_cpu_p_", [] {});
  }
}

at::Tensor& bernoulli_tensor(at::Tensor& self, const at::Tensor& p, Gen gen) {
  check_bernoulli_dtypes(self, p);
  kernels::bernoulli_(self, p, std::move(gen));
  return self;
}

at::Tensor bernoulli(const at::Tensor& self, Gen gen) {
  check_bernoulli_dtypes(self, self);
  at::Tensor out = at::empty_like(self, at::MemoryFormat::Contiguous);
  kernels::bernoulli_(out, self, std::move(gen));
  return out;
}

at::Tensor multinomial(const at::Tensor& self, int64_t num_samples, bool replacement, Gen gen) {
  return kernels::multinomial(self, num_samples, replacement, std::move(gen));
}

at::Tensor& randperm_out(int64_t n, Gen gen, at::Tensor& out) {
  kernels::randperm(n, out, std::move(gen));
  return out;
}

// PyTorch's dropout takes this fused path on CUDA-like devices.
std::tuple<at::Tensor, at::Tensor> native_dropout(const at::Tensor& input, double p, std::optional<bool> train) {
  TORCH_CHECK(p >= 0 && p <= 1, "dropout probability has to be between 0 and 1, but got ", p);
  if (input.numel() == 0) return {input, at::empty_like(input, input.options().dtype(at::kBool))};
  if (train.has_value() && !*train) {
    return {input.clone(), at::ones_like(input, input.options().dtype(at::kBool))};
  }
  const double keep = 1.0 - p;
  const double scale = keep == 0 ? 0.0 : 1.0 / keep;
  at::Tensor noise = at::empty_like(input, at::MemoryFormat::Contiguous);
  noise.bernoulli_(keep);  // draws from the device's generator
  at::Tensor output = input.mul(noise).mul_(scale);
  return {output, noise.to(at::kBool)};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("uniform_", uniform_);
  m.impl("normal_", normal_);
  m.impl("random_.from", random_from);
  m.impl("random_.to", random_to);
  m.impl("random_", random_default);
  m.impl("bernoulli_.float", bernoulli_float);
  m.impl("bernoulli_.Tensor", bernoulli_tensor);
  m.impl("bernoulli", bernoulli);
  m.impl("multinomial", multinomial);
  m.impl("randperm.generator_out", randperm_out);
  m.impl("native_dropout", native_dropout);
}

}  // namespace torch_sunrise::aten
