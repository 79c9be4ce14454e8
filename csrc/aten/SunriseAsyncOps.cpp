// Hot operators without a structured kernel, made asynchronous: their output
// shapes are simple to compute on the host, so the outputs are allocated and
// checked here and ATen's CPU kernel runs over views of device memory as
// device work, instead of synchronizing through the CPU fallback. Argument
// errors a user can cause are raised here, at the call; errors found while
// computing (an index out of range) surface at the next synchronization, as on
// a GPU.
#include "SunriseAsyncSupport.h"

#include <ATen/ExpandUtils.h>
#include <ATen/OpMathType.h>
#include <ATen/WrapDimUtils.h>
#include <ATen/WrapDimUtilsMulti.h>
#include <ATen/Dispatch.h>
#include <ATen/native/IndexingUtils.h>
#include <ATen/native/RangeUtils.h>
#include <ATen/native/cpu/mixed_data_type.h>
#include <ATen/native/layer_norm.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/embedding_dense_backward.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/vdot.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/index.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/native_dropout_backward.h>
#include <ATen/ops/native_layer_norm.h>
#include <ATen/ops/native_layer_norm_backward.h>
#include <ATen/ops/isnan.h>
#include <ATen/ops/masked_fill.h>
#include <ATen/ops/max.h>
#include <ATen/ops/min.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/roll.h>
#include <ATen/ops/std.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/sum_meta_dispatch.h>
#include <ATen/ops/var.h>
#include <ATen/ops/result_type.h>
#include <ATen/ops/where.h>
#include <torch/library.h>

#include <array>
#include <memory>

namespace torch_sunrise::aten {
namespace {

// A tensor with t's metadata on the meta device: meta kernels compute result
// shapes from it without touching memory.
at::Tensor meta_like(const at::Tensor& t) {
  return at::empty_strided(t.sizes(), t.strides(), t.options().device(c10::kMeta));
}

at::Tensor relu(const at::Tensor& self) {
  TORCH_CHECK(self.scalar_type() != at::kBool, "Boolean inputs not supported for relu");
  const c10::Device device = device_of({&self}, "aten::relu");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty_like(self);
  const Capture c(device);
  launch_task(c.stream, [self = c(self), out = c(out)] {
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
  launch_task(c.stream, [self = c(self)] {
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
  launch_task(c.stream, [self = c(self), out = c(out)] {
    Views v;
    v(out).copy_(at::isnan(v(self)));
  });
  return out;
}

void check_mask(const at::Tensor& self, const at::Tensor& mask) {
  TORCH_CHECK(mask.scalar_type() == at::kBool, "masked_fill_ only supports boolean masks, but got mask with dtype ",
              mask.scalar_type());
  TORCH_CHECK(at::infer_size(self.sizes(), mask.sizes()) == self.sizes(), "The size of the mask ", mask.sizes(),
              " must match the size of tensor ", self.sizes(), " for in-place masked_fill_");
}

at::Tensor& masked_fill_scalar(at::Tensor& self, const at::Tensor& mask, const c10::Scalar& value) {
  check_mask(self, mask);
  const c10::Device device = device_of({&self, &mask}, "aten::masked_fill_");
  const SunriseGuard guard(device);
  const Capture c(device);
  launch_task(c.stream, [self = c(self), mask = c(mask), value] {
    Views v;
    v(self).masked_fill_(v(mask), value);
  });
  return self;
}

at::Tensor& masked_fill_tensor(at::Tensor& self, const at::Tensor& mask, const at::Tensor& value) {
  check_mask(self, mask);
  TORCH_CHECK(value.dim() == 0, "masked_fill_ only supports a 0-dimensional value tensor, but got tensor with ",
              value.dim(), " dimension(s).");
  const c10::Device device = device_of({&self, &mask, &value}, "aten::masked_fill_");
  const SunriseGuard guard(device);
  const Capture c(device);
  launch_task(c.stream, [self = c(self), mask = c(mask), value = c(value)] {
    Views v;
    v(self).masked_fill_(v(mask), v(value));
  });
  return self;
}

std::vector<int64_t> where_shape(const at::Tensor& c, const at::Tensor& a, const at::Tensor& b) {
  return at::infer_size(at::infer_size(c.sizes(), a.sizes()), b.sizes());
}

void check_condition(const at::Tensor& condition) {
  TORCH_CHECK(condition.scalar_type() == at::kBool || condition.scalar_type() == at::kByte,
              "where expected condition to be a boolean tensor, but got a tensor with dtype ",
              condition.scalar_type());
}

at::Tensor where_self(const at::Tensor& condition, const at::Tensor& self, const at::Tensor& other) {
  check_condition(condition);
  const c10::Device device = device_of({&condition, &self, &other}, "aten::where.self");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty(where_shape(condition, self, other),
                             self.options().dtype(at::result_type(self, other)).device(device));
  const Capture c(device);
  launch_task(c.stream, [condition = c(condition), self = c(self), other = c(other), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::where_out(o, v(condition), v(self), v(other));
  });
  return out;
}

at::Tensor& where_self_out(const at::Tensor& condition, const at::Tensor& self, const at::Tensor& other,
                           at::Tensor& out) {
  check_condition(condition);
  const c10::Device device = device_of({&condition, &self, &other, &out}, "aten::where.self_out");
  const SunriseGuard guard(device);
  const c10::ScalarType dtype = at::result_type(self, other);
  TORCH_CHECK(out.scalar_type() == dtype, "Expected out type to be ", dtype, " but got ", out.scalar_type());
  at::native::resize_output(out, where_shape(condition, self, other));
  const Capture c(device);
  launch_task(c.stream, [condition = c(condition), self = c(self), other = c(other), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::where_out(o, v(condition), v(self), v(other));
  });
  return out;
}

std::vector<int64_t> index_select_shape(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  TORCH_CHECK_INDEX(index.dim() <= 1, "index_select(): Index is supposed to be a vector");
  TORCH_CHECK(index.scalar_type() == at::kLong || index.scalar_type() == at::kInt,
              "index_select(): Expected dtype int32 or int64 for index");
  std::vector<int64_t> shape = self.sizes().vec();
  if (self.dim() > 0) shape[static_cast<size_t>(dim)] = index.numel();
  return shape;
}

at::Tensor index_select(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  dim = at::maybe_wrap_dim(dim, self.dim());
  const c10::Device device = device_of({&self, &index}, "aten::index_select");
  const SunriseGuard guard(device);
  at::Tensor out = at::empty(index_select_shape(self, dim, index), self.options());
  const Capture c(device);
  launch_task(c.stream, [self = c(self), dim, index = c(index), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::index_select_out(o, v(self), dim, v(index));
  });
  return out;
}

at::Tensor& index_select_out(const at::Tensor& self, int64_t dim, const at::Tensor& index, at::Tensor& out) {
  dim = at::maybe_wrap_dim(dim, self.dim());
  const c10::Device device = device_of({&self, &index, &out}, "aten::index_select.out");
  const SunriseGuard guard(device);
  TORCH_CHECK(out.scalar_type() == self.scalar_type(), "index_select(): self and result must have the same scalar type");
  at::native::resize_output(out, index_select_shape(self, dim, index));
  const Capture c(device);
  launch_task(c.stream, [self = c(self), dim, index = c(index), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::index_select_out(o, v(self), dim, v(index));
  });
  return out;
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
  const c10::Device device = structured::common_device({&input}, {&weight, &bias}, {}, "aten::native_layer_norm");
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
  launch_task(c.stream, [input = c(input), shape = normalized_shape.vec(), weight = c(weight), bias = c(bias), eps,
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
  const c10::Device device = structured::common_device({&grad_out, &input, &mean, &rstd}, {&weight, &bias}, {},
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
  launch_task(c.stream, [grad_out = c(grad_out), input = c(input), shape = normalized_shape.vec(), mean = c(mean),
                  rstd = c(rstd), weight = c(weight), bias = c(bias), output_mask, dx = c(dx), dw = c(dw), db = c(db)] {
    Views v;
    put_results(v,
                at::native_layer_norm_backward(v(grad_out), v(input), shape, v(mean), v(rstd), v(weight), v(bias),
                                               output_mask),
                dx, dw, db);
  });
  return {dx, dw, db};
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
  launch_task(c.stream, [grad_output = c(grad_output), indices = c(indices), num_weights, padding_idx, scale_grad_by_freq,
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
  launch_task(c.stream, [grad_output = c(grad_output), mask = c(mask), scale, out = c(out)] {
    Views v;
    v(out).copy_(at::native_dropout_backward(v(grad_output), v(mask), scale));
  });
  return out;
}

// ----------------------------------------------------------- out= variants
// The out= argument is sized on the host (resize_output, with its warning for
// a non-empty out of another shape), then the CPU kernel fills its view.
at::Tensor& abs_out(const at::Tensor& self, at::Tensor& out) {
  const c10::Device device = device_of({&self, &out}, "aten::abs.out");
  const SunriseGuard guard(device);
  const c10::ScalarType expected = self.is_complex() ? c10::toRealValueType(self.scalar_type()) : self.scalar_type();
  TORCH_CHECK(at::canCast(expected, out.scalar_type()), "result type ", expected,
              " can't be cast to the desired output type ", out.scalar_type());
  at::native::resize_output(out, self.sizes());
  const Capture c(device);
  launch_task(c.stream, [self = c(self), out = c(out)] {
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
  const c10::Device device = device_of({&out}, "aten::arange.start_out");
  const SunriseGuard guard(device);
  const int64_t size = AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "arange_out", [&] {
    return at::native::compute_arange_size<scalar_t>(start, end, step);
  });
  at::native::resize_output(out, {size});
  const Capture c(device);
  launch_task(c.stream, [start, end, step, out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::arange_out(o, start, end, step);
  });
  return out;
}

// eye's shape depends only on n and m (checked as CPU's kernel does).
at::Tensor& eye_m_out(int64_t n, int64_t m, at::Tensor& out) {
  const c10::Device device = device_of({&out}, "aten::eye.m_out");
  const SunriseGuard guard(device);
  TORCH_CHECK(n >= 0, "n must be greater or equal to 0, got ", n);
  TORCH_CHECK(m >= 0, "m must be greater or equal to 0, got ", m);
  at::native::resize_output(out, {n, m});
  const Capture c(device);
  launch_task(c.stream, [n, m, out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::eye_out(o, n, m);
  });
  return out;
}

at::Tensor& eye_out(int64_t n, at::Tensor& out) { return eye_m_out(n, n, out); }

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
  launch_task(c.stream, [self = c(self), dims, correction, keepdim, out = c(out)] {
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
  launch_task(c.stream, [self = c(self), other = c(other), out = c(out)] {
    Views v;
    v(out).copy_(Conjugate ? at::vdot(v(self), v(other)) : at::dot(v(self), v(other)));
  });
  return out;
}

at::Tensor flip(const at::Tensor& self, c10::IntArrayRef dims) {
  const c10::Device device = device_of({&self}, "aten::flip");
  const SunriseGuard guard(device);
  at::dim_list_to_bitset(dims, self.dim());  // wraps and checks the dims, as the CPU kernel does
  at::Tensor out = at::empty_like(self, at::MemoryFormat::Preserve);
  const Capture c(device);
  launch_task(c.stream, [self = c(self), dims = dims.vec(), out = c(out)] {
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
  launch_task(c.stream, [self = c(self), shifts = shifts.vec(), dims = dims.vec(), out = c(out)] {
    Views v;
    v(out).copy_(at::roll(v(self), shifts, dims));
  });
  return out;
}

// ------------------------------------------------------ data-dependent shapes
// nonzero's result has as many rows as the input has nonzero elements, so the
// host must wait for the device to count them: a true synchronization point,
// as on CUDA. The device computes the indices, the host waits for that task,
// allocates the result and the device copies the indices into it.
at::Tensor nonzero_on_device(const at::Tensor& self, const Capture& c) {
  auto indices = std::make_shared<at::Tensor>();
  launch_task(c.stream, [self = c(self), indices] {
    Views v;
    *indices = at::nonzero(v(self));
  });
  c.stream.synchronize();
  return *indices;  // a CPU tensor the finished task made; nothing else touches it now
}

void copy_into(const Capture& c, const at::Tensor& out, at::Tensor host_result) {
  launch_task(c.stream, [out = c(out), host_result = std::move(host_result)] {
    Views v;
    v(out).copy_(host_result);
  });
}

// The CPU kernel's layout: column-major (the indices of one dimension are
// contiguous), kept only when out= already has the result's sizes.
std::array<int64_t, 2> nonzero_strides(const at::Tensor& indices) { return {1, indices.size(0)}; }

at::Tensor nonzero(const at::Tensor& self) {
  const c10::Device device = device_of({&self}, "aten::nonzero");
  const SunriseGuard guard(device);
  const Capture c(device);
  at::Tensor indices = nonzero_on_device(self, c);
  at::Tensor out = at::empty_strided(indices.sizes(), nonzero_strides(indices), self.options().dtype(at::kLong));
  copy_into(c, out, std::move(indices));
  return out;
}

at::Tensor& nonzero_out(const at::Tensor& self, at::Tensor& out) {
  const c10::Device device = device_of({&self, &out}, "aten::nonzero.out");
  TORCH_CHECK(out.scalar_type() == at::kLong, "nonzero: Expected out tensor to have scalar type Long but got scalar type ",
              out.scalar_type());
  const SunriseGuard guard(device);
  const Capture c(device);
  at::Tensor indices = nonzero_on_device(self, c);
  if (out.sizes() != indices.sizes()) {
    at::native::resize_output(out, indices.sizes());
    out.as_strided_(indices.sizes(), nonzero_strides(indices));
  }
  copy_into(c, out, std::move(indices));
  return out;
}

// Through nonzero and integer indexing, as CUDA does: masked_select(x, m) is
// x[m] once both are broadcast to one shape.
at::Tensor& masked_select_out(const at::Tensor& self, const at::Tensor& mask, at::Tensor& out) {
  TORCH_CHECK(mask.scalar_type() == at::kBool, "masked_select: expected BoolTensor for mask");
  TORCH_CHECK(self.scalar_type() == out.scalar_type(), "masked_select(): self and result must have the same scalar type");
  device_of({&self, &mask, &out}, "aten::masked_select");
  auto [m, x] = at::expand_outplace(mask, self);
  if (x->dim() == 0) {  // indexing needs a dimension to select along; the result is 1-D either way
    return at::index_out(out, x->reshape({1}), c10::List<std::optional<at::Tensor>>({m->reshape({1})}));
  }
  return at::index_out(out, *x, c10::List<std::optional<at::Tensor>>({*m}));
}

at::Tensor masked_select(const at::Tensor& self, const at::Tensor& mask) {
  at::Tensor out = at::empty({0}, self.options());
  return masked_select_out(self, mask, out);
}

// Advanced indexing with integer index tensors: the result's shape follows
// from the shapes alone (the meta kernel computes it). Boolean masks become
// integer indices through nonzero, which waits for the device.
at::Tensor& index_out(const at::Tensor& self, const c10::List<std::optional<at::Tensor>>& indices, at::Tensor& out) {
  bool data_dependent = false;
  for (const std::optional<at::Tensor>& index : indices) {
    if (!index || !index->defined()) continue;
    data_dependent |= index->scalar_type() == at::kBool || index->scalar_type() == at::kByte;
  }
  const c10::Device device = device_of({&self, &out}, "aten::index.Tensor_out");
  const SunriseGuard guard(device);
  if (data_dependent) {
    c10::List<std::optional<at::Tensor>> integer_indices;
    for (const at::Tensor& index : at::native::expandTensors(self, indices)) {
      integer_indices.push_back(index.defined() ? std::optional<at::Tensor>(index) : std::nullopt);
    }
    return index_out(self, integer_indices, out);
  }
  c10::List<std::optional<at::Tensor>> meta_indices;
  for (const std::optional<at::Tensor>& index : indices) {
    if (index && index->defined()) {
      TORCH_CHECK(index->device() == device || index->device().is_cpu(),
                  "indices should be either on cpu or on the same device as the indexed tensor (", device, ")");
      meta_indices.push_back(std::optional<at::Tensor>(meta_like(*index)));
    } else {
      meta_indices.push_back(std::nullopt);
    }
  }
  at::Tensor meta_out = at::empty({0}, out.options().device(c10::kMeta));
  at::index_out(meta_out, meta_like(self), meta_indices);
  TORCH_CHECK(out.scalar_type() == self.scalar_type(), "index_out: expected out dtype ", self.scalar_type(),
              ", got ", out.scalar_type());
  at::native::resize_output(out, meta_out.sizes());
  const Capture c(device);
  launch_task(c.stream, [self = c(self), held = c(indices), out = c(out)] {
    Views v;
    c10::List<std::optional<at::Tensor>> cpu_indices;
    for (const std::optional<kernels::DeferredTensor>& index : held) cpu_indices.push_back(v(index));
    at::Tensor o = v(out);
    at::index_out(o, v(self), cpu_indices);
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
  launch_task(c.stream, [self = c(self), out = c(out)] {
    Views v;
    v(out).copy_(IsMax ? at::max(v(self)) : at::min(v(self)));
  });
  return out;
}

// Fused Adam(W): every argument is updated in place, so nothing needs a shape.
template <bool AdamW>
void fused_adam_impl(at::TensorList self, at::TensorList grads, at::TensorList exp_avgs,
                     at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                     double lr, const std::optional<at::Tensor>& lr_tensor, double beta1, double beta2,
                     double weight_decay, double eps, bool amsgrad, bool maximize,
                     const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf) {
  if (self.empty()) return;
  // Every list, not just the first parameter: optimizer state on another
  // device raises here, as it does on CUDA, instead of being read as if local.
  const c10::IListRef<at::Tensor> lists[] = {self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps};
  const c10::Device device = structured::common_device(
      {}, {&lr_tensor, &grad_scale, &found_inf}, {&lists[0], &lists[1], &lists[2], &lists[3], &lists[4], &lists[5]},
      AdamW ? "aten::_fused_adamw_" : "aten::_fused_adam_");
  const SunriseGuard guard(device);
  double bytes = 0;
  for (at::TensorList list : {self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs}) {
    for (const at::Tensor& t : list) bytes += static_cast<double>(t.numel()) * static_cast<double>(t.element_size());
  }
  const bool serial = serial_bytes(bytes);
  const Capture c(device);
  launch_task(c.stream, [p = c(self), g = c(grads), m = c(exp_avgs), s = c(exp_avg_sqs), mx = c(max_exp_avg_sqs),
                  st = c(state_steps), lr, lr_tensor = c(lr_tensor), beta1, beta2, weight_decay, eps, amsgrad,
                  maximize, grad_scale = c(grad_scale), found_inf = c(found_inf), serial] {
    Views v;
    const SerialMathScope one_thread(serial);
    auto run = [&](auto learning_rate) {
      if constexpr (AdamW) {
        at::_fused_adamw_(v(p), v(g), v(m), v(s), v(mx), v(st), learning_rate, beta1, beta2, weight_decay, eps,
                          amsgrad, maximize, v(grad_scale), v(found_inf));
      } else {
        at::_fused_adam_(v(p), v(g), v(m), v(s), v(mx), v(st), learning_rate, beta1, beta2, weight_decay, eps,
                         amsgrad, maximize, v(grad_scale), v(found_inf));
      }
    };
    if (lr_tensor) run(v(*lr_tensor));
    else run(lr);
  });
}

template <bool AdamW>
void fused_adam(at::TensorList self, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                at::TensorList max_exp_avg_sqs, at::TensorList state_steps, double lr, double beta1, double beta2,
                double weight_decay, double eps, bool amsgrad, bool maximize,
                const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf) {
  fused_adam_impl<AdamW>(self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr, std::nullopt, beta1,
                         beta2, weight_decay, eps, amsgrad, maximize, grad_scale, found_inf);
}

template <bool AdamW>
void fused_adam_tensor_lr(at::TensorList self, at::TensorList grads, at::TensorList exp_avgs,
                          at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                          const at::Tensor& lr, double beta1, double beta2, double weight_decay, double eps,
                          bool amsgrad, bool maximize, const std::optional<at::Tensor>& grad_scale,
                          const std::optional<at::Tensor>& found_inf) {
  fused_adam_impl<AdamW>(self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, 0.0, lr, beta1, beta2,
                         weight_decay, eps, amsgrad, maximize, grad_scale, found_inf);
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("relu", relu);
  m.impl("relu_", relu_);
  m.impl("isnan", isnan);
  m.impl("masked_fill_.Scalar", masked_fill_scalar);
  m.impl("masked_fill_.Tensor", masked_fill_tensor);
  m.impl("where.self", where_self);
  m.impl("where.self_out", where_self_out);
  m.impl("index_select", index_select);
  m.impl("index_select.out", index_select_out);
  m.impl("native_layer_norm", native_layer_norm);
  m.impl("native_layer_norm_backward", native_layer_norm_backward);
  m.impl("embedding_dense_backward", embedding_dense_backward);
  m.impl("native_dropout_backward", native_dropout_backward);
  m.impl("abs.out", abs_out);
  m.impl("arange.start_out", arange_out);
  m.impl("index.Tensor_out", index_out);
  m.impl("dot", dot_product<false>);
  m.impl("vdot", dot_product<true>);
  m.impl("flip", flip);
  m.impl("roll", roll);
  m.impl("nonzero", nonzero);
  m.impl("nonzero.out", nonzero_out);
  m.impl("masked_select", masked_select);
  m.impl("masked_select.out", masked_select_out);
  m.impl("eye.m_out", eye_m_out);
  m.impl("eye.out", eye_out);
  m.impl("var.correction", var_or_std<false>);
  m.impl("std.correction", var_or_std<true>);
  m.impl("max", full_reduction<true>);
  m.impl("min", full_reduction<false>);
  m.impl("_fused_adamw_", fused_adam<true>);
  m.impl("_fused_adamw_.tensor_lr", fused_adam_tensor_lr<true>);
  m.impl("_fused_adam_", fused_adam<false>);
  m.impl("_fused_adam_.tensor_lr", fused_adam_tensor_lr<false>);
}

}  // namespace torch_sunrise::aten
