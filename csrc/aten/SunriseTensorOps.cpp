// Small everyday ops without a structured kernel, as device work: relu and
// isnan, the out= forms of abs, arange and eye (sized on the host), flip and
// roll, floor_divide, logsigmoid and its backward, the backward of embedding,
// dropout and mse_loss. Output shapes are simple to
// compute on the host, so outputs are allocated and checked at the call and
// ATen's CPU kernel runs over views of device memory on the device thread.
#include "SunriseAsyncSupport.h"

#include <ATen/Dispatch.h>
#include <ATen/ExpandUtils.h>
#include <ATen/WrapDimUtilsMulti.h>
#include <ATen/native/RangeUtils.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/div.h>
#include <ATen/ops/embedding_dense_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/isnan.h>
#include <ATen/ops/log_sigmoid_backward.h>
#include <ATen/ops/log_sigmoid_forward.h>
#include <ATen/ops/mse_loss_backward.h>
#include <ATen/ops/native_dropout_backward.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/roll.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

at::Tensor relu(const at::Tensor& self) {
  TORCH_CHECK(self.scalar_type() != at::kBool, "Boolean inputs not supported for relu");
  const c10::Device device = device_of({&self}, "aten::relu");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty_like(self);
  const Capture c(device);
  c.launch([self = c(self), out = c(out)] {
    Views v;
    v(out).copy_(at::relu(v(self)));
  });
  return out;
}

at::Tensor& relu_(at::Tensor& self) {
  TORCH_CHECK(self.scalar_type() != at::kBool, "Boolean inputs not supported for relu");
  const c10::Device device = device_of({&self}, "aten::relu_");
  const SunriseGuard guard(device);
  const Capture c(device);
  c.launch([self = c(self)] {
    Views v;
    at::Tensor view = v(self);
    at::relu_(view);
  });
  return self;
}

at::Tensor isnan(const at::Tensor& self) {
  const c10::Device device = device_of({&self}, "aten::isnan");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty_like(self, self.options().dtype(at::kBool));
  const Capture c(device);
  c.launch([self = c(self), out = c(out)] {
    Views v;
    v(out).copy_(at::isnan(v(self)));
  });
  return out;
}

// ------------------------------------------------- embedding and dropout grads
at::Tensor embedding_dense_backward(const at::Tensor& grad_output, const at::Tensor& indices, int64_t num_weights,
                                    int64_t padding_idx, bool scale_grad_by_freq) {
  TORCH_CHECK(indices.scalar_type() == at::kLong || indices.scalar_type() == at::kInt,
              "embedding_backward: expected indices of dtype int32 or int64, got ", indices.scalar_type());
  TORCH_CHECK(grad_output.dim() >= 1, "embedding_backward: grad_output must have at least one dimension");
  const c10::Device device = device_of({&grad_output, &indices}, "aten::embedding_dense_backward");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty({num_weights, grad_output.size(-1)}, grad_output.options());
  const Capture c(device);
  c.launch([grad_output = c(grad_output), indices = c(indices), num_weights, padding_idx, scale_grad_by_freq,
                  out = c(out)] {
    Views v;
    v(out).copy_(at::embedding_dense_backward(v(grad_output), v(indices), num_weights, padding_idx,
                                               scale_grad_by_freq));
  });
  return out;
}

at::Tensor native_dropout_backward(const at::Tensor& grad_output, const at::Tensor& mask, double scale) {
  const c10::Device device = device_of({&grad_output, &mask}, "aten::native_dropout_backward");
  const SunriseGuard guard(device);
  // grad * mask * scale: a floating scale promotes integer and bool gradients.
  const at::Tensor product = at::empty({0}, grad_output.options().dtype(at::result_type(grad_output, mask))
                                                .device(c10::kMeta));
  at::Tensor out = at::empty(at::infer_size(grad_output.sizes(), mask.sizes()),
                             grad_output.options().dtype(at::result_type(product, c10::Scalar(scale))));
  const Capture c(device);
  c.launch([grad_output = c(grad_output), mask = c(mask), scale, out = c(out)] {
    Views v;
    v(out).copy_(at::native_dropout_backward(v(grad_output), v(mask), scale));
  });
  return out;
}

// ----------------------------------------------------------- out= variants
// The out= argument is sized on the host (resize_output, with its warning for
// a non-empty out of another shape), then the CPU kernel fills its view.
at::Tensor& abs_out(const at::Tensor& self, at::Tensor& out) {
  const c10::Device device = device_of({&self}, "aten::abs.out", {&out});
  const SunriseGuard guard(device);
  const c10::ScalarType expected = self.is_complex() ? c10::toRealValueType(self.scalar_type()) : self.scalar_type();
  TORCH_CHECK(at::canCast(expected, out.scalar_type()), "result type ", expected,
              " can't be cast to the desired output type ", out.scalar_type());
  at::native::resize_output(out, self.sizes());
  const Capture c(device);
  c.launch([self = c(self), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::abs_out(o, v(self));
  });
  return out;
}

// arange's length depends only on the scalars, computed (with CPU's argument
// checks) by the helper CPU's kernel uses. Not the meta kernel: torch registers
// a Python one, which costs hundreds of microseconds per call.
at::Tensor& arange_out(const c10::Scalar& start, const c10::Scalar& end, const c10::Scalar& step, at::Tensor& out) {
  const c10::Device device = device_of({}, "aten::arange.start_out", {&out});
  const SunriseGuard guard(device);
  const int64_t size = AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "arange_out", [&] {
    return at::native::compute_arange_size<scalar_t>(start, end, step);
  });
  // CPU's and CUDA's rule, not resize_output's: an out= of the right number of
  // elements keeps its shape; another is resized, with arange's own warning.
  if (out.numel() != size) {
    if (out.numel() > 0) {
      TORCH_WARN("The number of elements in the out tensor of shape ", out.sizes(), " is ",
                 out.numel(), " which does not match the computed number of elements ", size,
                 ". Note that this may occur as a result of rounding error. "
                 "The out tensor will be resized to a tensor of shape (", size, ",).");
    }
    out.resize_({size});
  }
  const Capture c(device);
  c.launch([start, end, step, out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::arange_out(o, start, end, step);
  });
  return out;
}

// eye's shape depends only on n and m (checked as CPU's kernel does).
at::Tensor& eye_m_out(int64_t n, int64_t m, at::Tensor& out) {
  const c10::Device device = device_of({}, "aten::eye.m_out", {&out});
  const SunriseGuard guard(device);
  TORCH_CHECK(n >= 0, "n must be greater or equal to 0, got ", n);
  TORCH_CHECK(m >= 0, "m must be greater or equal to 0, got ", m);
  out.resize_({n, m});  // as CPU's and CUDA's kernels: without resize_output's warning
  const Capture c(device);
  c.launch([n, m, out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::eye_out(o, n, m);
  });
  return out;
}

at::Tensor& eye_out(int64_t n, at::Tensor& out) { return eye_m_out(n, n, out); }

at::Tensor flip(const at::Tensor& self, c10::IntArrayRef dims) {
  const c10::Device device = device_of({&self}, "aten::flip");
  const SunriseGuard guard(device);
  at::dim_list_to_bitset(dims, self.dim());  // wraps and checks the dims, as the CPU kernel does
  at::Tensor out = at::empty_like(self, at::MemoryFormat::Preserve);
  const Capture c(device);
  c.launch([self = c(self), dims = dims.vec(), out = c(out)] {
    Views v;
    v(out).copy_(at::flip(v(self), dims));
  });
  return out;
}

// The CPU kernel rolls a flattened copy when no dims are given, otherwise it
// keeps the input's suggested memory format.
at::Tensor roll(const at::Tensor& self, c10::IntArrayRef shifts, c10::IntArrayRef dims) {
  const c10::Device device = device_of({&self}, "aten::roll");
  const SunriseGuard guard(device);
  TORCH_CHECK(!shifts.empty(), "`shifts` required");
  const bool flat = dims.empty() && shifts.size() == 1;
  TORCH_CHECK(flat || shifts.size() == dims.size(), "shifts and dimensions must align. shifts: ", shifts.size(),
              ", dims:", dims.size());
  for (int64_t d : dims) at::maybe_wrap_dim(d, self.dim());
  at::Tensor out = flat ? at::empty(self.sizes(), self.options())
                        : empty_in_suggested_format(self, self.sizes());
  const Capture c(device);
  c.launch([self = c(self), shifts = shifts.vec(), dims = dims.vec(), out = c(out)] {
    Views v;
    v(out).copy_(at::roll(v(self), shifts, dims));
  });
  return out;
}

// floor_divide is CPU's div with rounding_mode="floor" (the same iterator and
// kernel), which runs natively.
at::Tensor floor_divide(const at::Tensor& self, const at::Tensor& other) { return at::div(self, other, "floor"); }
at::Tensor& floor_divide_(at::Tensor& self, const at::Tensor& other) { return self.div_(other, "floor"); }
at::Tensor& floor_divide_out(const at::Tensor& self, const at::Tensor& other, at::Tensor& out) {
  return at::div_out(out, self, other, "floor");
}

// logsigmoid: output and buffer contiguous, as CPU's kernel allocates them.
std::tuple<at::Tensor, at::Tensor> log_sigmoid_forward(const at::Tensor& self) {
  const c10::Device device = device_of({&self}, "aten::log_sigmoid_forward");
  const SunriseGuard guard(device);
  at::Tensor output = at::empty_like(self, at::MemoryFormat::Contiguous);
  at::Tensor buffer = at::empty_like(self, at::MemoryFormat::Contiguous);
  const Capture c(device);
  c.launch([self = c(self), output = c(output), buffer = c(buffer)] {
    Views v;
    at::Tensor o = v(output);
    at::Tensor b = v(buffer);
    const at::Tensor x = v(self);
    const SerialMathScope serial(serial_elementwise({&x, &o, &b}));  // its kernel splits at any element
    at::log_sigmoid_forward_out(o, b, x);
  });
  return {output, buffer};
}

at::Tensor log_sigmoid_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& buffer) {
  const c10::Device device = device_of({&grad_output, &self, &buffer}, "aten::log_sigmoid_backward");
  const SunriseGuard guard(device);
  at::Tensor grad_input = at::empty_like(grad_output);
  const Capture c(device);
  c.launch([grad_output = c(grad_output), self = c(self), buffer = c(buffer), grad_input = c(grad_input)] {
    Views v;
    at::Tensor g = v(grad_input);
    const at::Tensor go = v(grad_output);
    const at::Tensor x = v(self);
    const at::Tensor b = v(buffer);
    const SerialMathScope serial(serial_elementwise({&go, &x, &b, &g}));
    at::log_sigmoid_backward_out(g, go, x, b);
  });
  return grad_input;
}

// CPU's mse_loss_backward writes every element of a contiguous grad_input.
at::Tensor mse_loss_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                             int64_t reduction) {
  const c10::Device device = device_of({&grad_output, &self, &target}, "aten::mse_loss_backward");
  const SunriseGuard guard(device);
  at::Tensor grad_input = at::empty_like(self, at::MemoryFormat::Contiguous);
  const Capture c(device);
  c.key_on(static_cast<uint64_t>(reduction));
  c.launch([grad_output = c(grad_output), self = c(self), target = c(target), reduction, grad_input = c(grad_input)] {
    Views v;
    at::Tensor g = v(grad_input);
    const at::Tensor go = v(grad_output);
    const at::Tensor x = v(self);
    const at::Tensor y = v(target);
    const SerialMathScope serial(serial_elementwise({&go, &x, &y, &g}));
    at::mse_loss_backward_out(g, go, x, y, reduction);
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("relu", relu);
  m.impl("relu_", relu_);
  m.impl("isnan", isnan);
  m.impl("embedding_dense_backward", embedding_dense_backward);
  m.impl("native_dropout_backward", native_dropout_backward);
  m.impl("abs.out", abs_out);
  m.impl("arange.start_out", arange_out);
  m.impl("flip", flip);
  m.impl("roll", roll);
  m.impl("floor_divide", floor_divide);
  m.impl("floor_divide_.Tensor", floor_divide_);
  m.impl("floor_divide.out", floor_divide_out);
  m.impl("log_sigmoid_forward", log_sigmoid_forward);
  m.impl("log_sigmoid_backward", log_sigmoid_backward);
  m.impl("mse_loss_backward", mse_loss_backward);
  m.impl("eye.m_out", eye_m_out);
  m.impl("eye.out", eye_out);
}

}  // namespace torch_sunrise::aten
