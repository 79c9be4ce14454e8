// Indexing and selection as device work: masked_fill, where, index_select,
// advanced indexing, and the ops whose result size depends on the data
// (nonzero, masked_select, boolean masks), which wait for the device as they
// do on CUDA. Argument errors a user can cause are raised at the call; an
// index out of range surfaces at the next synchronization, as on a GPU.
#include "SunriseAsyncSupport.h"

#include <torch_sunrise/SunriseHostWait.h>

#include <ATen/ExpandUtils.h>
#include <ATen/WrapDimUtils.h>
#include <ATen/native/IndexingUtils.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/index.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/masked_fill.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/result_type.h>
#include <ATen/ops/where.h>

#include <array>
#include <ATen/ops/_index_put_impl.h>
#include <torch/library.h>

namespace torch_sunrise::aten {
namespace {

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
  c.launch([self = c(self), mask = c(mask), value] {
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
  c.launch([self = c(self), mask = c(mask), value = c(value)] {
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

at::Tensor& where_self_out(const at::Tensor& condition, const at::Tensor& self, const at::Tensor& other,
                           at::Tensor& out) {
  check_condition(condition);
  const c10::Device device = device_of({&condition, &self, &other}, "aten::where.self_out", {&out});
  const SunriseGuard guard(device);
  const c10::ScalarType dtype = at::result_type(self, other);
  TORCH_CHECK(out.scalar_type() == dtype, "Expected out type to be ", dtype, " but got ", out.scalar_type());
  at::native::resize_output(out, where_shape(condition, self, other));
  const Capture c(device);
  c.launch([condition = c(condition), self = c(self), other = c(other), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::where_out(o, v(condition), v(self), v(other));
  });
  return out;
}

at::Tensor where_self(const at::Tensor& condition, const at::Tensor& self, const at::Tensor& other) {
  check_condition(condition);
  const c10::Device device = device_of({&condition, &self, &other}, "aten::where.self");
  at::Tensor out = at::empty(where_shape(condition, self, other),
                             self.options().dtype(at::result_type(self, other)).device(device));
  return where_self_out(condition, self, other, out);
}

std::vector<int64_t> index_select_shape(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  TORCH_CHECK_INDEX(index.dim() <= 1, "index_select(): Index is supposed to be a vector");
  TORCH_CHECK(index.scalar_type() == at::kLong || index.scalar_type() == at::kInt,
              "index_select(): Expected dtype int32 or int64 for index");
  std::vector<int64_t> shape = self.sizes().vec();
  if (self.dim() > 0) shape[static_cast<size_t>(dim)] = index.numel();
  return shape;
}

at::Tensor& index_select_out(const at::Tensor& self, int64_t dim, const at::Tensor& index, at::Tensor& out) {
  dim = at::maybe_wrap_dim(dim, self.dim());
  const c10::Device device = device_of({&self, &index}, "aten::index_select.out", {&out});
  const SunriseGuard guard(device);
  TORCH_CHECK(out.scalar_type() == self.scalar_type(), "index_select(): self and result must have the same scalar type");
  at::native::resize_output(out, index_select_shape(self, dim, index));
  const Capture c(device);
  c.launch([self = c(self), dim, index = c(index), out = c(out)] {
    Views v;
    at::Tensor o = v(out);
    at::index_select_out(o, v(self), dim, v(index));
  });
  return out;
}

at::Tensor index_select(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  const c10::Device device = device_of({&self, &index}, "aten::index_select");
  at::Tensor out = at::empty(index_select_shape(self, at::maybe_wrap_dim(dim, self.dim()), index),
                             self.options().device(device));
  return index_select_out(self, dim, index, out);
}

// ------------------------------------------------------ data-dependent shapes
// nonzero's result has as many rows as the input has nonzero elements, so the
// host must wait for the device to count them: a true synchronization point,
// as on CUDA. The device computes the indices, the host waits for that task,
// allocates the result and the device copies the indices into it.
at::Tensor nonzero_on_device(const at::Tensor& self, const Capture& c) {
  before_host_wait(c.stream, "aten::nonzero (also behind boolean indexing and masked_select: the result's size "
                   "depends on the data, which the host must wait for)",
                   "move it out of the captured region, or use a fixed-size form (torch.where, masked_fill)");
  auto indices = std::make_shared<at::Tensor>();
  c.launch([self = c(self), indices] {
    Views v;
    *indices = at::nonzero(v(self));
  });
  c.stream.synchronize();
  return *indices;  // a CPU tensor the finished task made; nothing else touches it now
}

void copy_into(const Capture& c, const at::Tensor& out, at::Tensor host_result) {
  c.launch([out = c(out), host_result = std::move(host_result)] {
    Views v;
    v(out).copy_(host_result);
  });
}

// The CPU kernel's layout: column-major (the indices of one dimension are
// contiguous), kept only when out= already has the result's sizes.
std::array<int64_t, 2> nonzero_strides(const at::Tensor& indices) { return {1, indices.size(0)}; }

at::Tensor& nonzero_out(const at::Tensor& self, at::Tensor& out) {
  const c10::Device device = device_of({&self}, "aten::nonzero.out", {&out});
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

at::Tensor nonzero(const at::Tensor& self) {
  at::Tensor out = at::empty({0}, self.options().dtype(at::kLong));
  return nonzero_out(self, out);
}

// Through nonzero and integer indexing, as CUDA does: masked_select(x, m) is
// x[m] once both are broadcast to one shape.
at::Tensor& masked_select_out(const at::Tensor& self, const at::Tensor& mask, at::Tensor& out) {
  TORCH_CHECK(mask.scalar_type() == at::kBool, "masked_select: expected BoolTensor for mask");
  TORCH_CHECK(self.scalar_type() == out.scalar_type(), "masked_select(): self and result must have the same scalar type");
  // CPU's kernel has every dtype but the 16-64 bit unsigned ones; indexing would take those.
  TORCH_CHECK_NOT_IMPLEMENTED(!c10::isBarebonesUnsignedType(self.scalar_type()), "\"masked_select\" not implemented for '",
                              c10::toString(self.scalar_type()), "'");
  device_of({&self, &mask}, "aten::masked_select", {&out});
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

// Index tensors on the CPU or on the indexed tensor's device, as CUDA accepts them.
void check_index_devices(const c10::List<std::optional<at::Tensor>>& indices, c10::Device device) {
  for (const std::optional<at::Tensor>& index : indices) {
    if (index && index->defined()) {
      TORCH_CHECK(index->device() == device || index->device().is_cpu(),
                  "indices should be either on cpu or on the same device as the indexed tensor (", device, ")");
    }
  }
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
  const c10::Device device = device_of({&self}, "aten::index.Tensor_out", {&out});
  const SunriseGuard guard(device);
  if (data_dependent) {
    c10::List<std::optional<at::Tensor>> integer_indices;
    for (const at::Tensor& index : at::native::expandTensors(self, indices)) {
      integer_indices.push_back(index.defined() ? std::optional<at::Tensor>(index) : std::nullopt);
    }
    return index_out(self, integer_indices, out);
  }
  check_index_devices(indices, device);
  c10::List<std::optional<at::Tensor>> meta_indices;
  for (const std::optional<at::Tensor>& index : indices) {
    const bool present = index && index->defined();
    meta_indices.push_back(present ? std::optional<at::Tensor>(meta_like(*index)) : std::nullopt);
  }
  at::Tensor meta_out = at::empty({0}, out.options().device(c10::kMeta));
  at::index_out(meta_out, meta_like(self), meta_indices);
  TORCH_CHECK(out.scalar_type() == self.scalar_type(), "index_out: expected out dtype ", self.scalar_type(),
              ", got ", out.scalar_type());
  at::native::resize_output(out, meta_out.sizes());
  const Capture c(device);
  c.launch([self = c(self), held = c(indices), out = c(out)] {
    Views v;
    c10::List<std::optional<at::Tensor>> cpu_indices;
    for (const std::optional<kernels::DeferredTensor>& index : held) cpu_indices.push_back(v(index));
    at::Tensor o = v(out);
    at::index_out(o, v(self), cpu_indices);
  });
  return out;
}

// x[idx] = v and index_put_ (accumulate too): in place, so nothing to size;
// CPU's kernel (boolean masks through its own nonzero) runs over views. An
// index out of range is the device's asynchronous error, as on CUDA.
at::Tensor& index_put_impl(at::Tensor& self, const c10::List<std::optional<at::Tensor>>& indices,
                           const at::Tensor& values, bool accumulate, bool unsafe) {
  const c10::Device device = device_of({&self, &values}, "aten::_index_put_impl_");
  const SunriseGuard guard(device);
  TORCH_CHECK_INDEX(indices.size() <= static_cast<size_t>(self.dim()), "too many indices for tensor of dimension ",
                    self.dim(), " (got ", indices.size(), ")");
  check_index_devices(indices, device);
  const Capture c(device);
  c.key_on(accumulate);
  c.launch([self = c(self), held = c(indices), values = c(values), accumulate, unsafe] {
    Views v;
    c10::List<std::optional<at::Tensor>> cpu_indices;
    for (const std::optional<kernels::DeferredTensor>& index : held) cpu_indices.push_back(v(index));
    at::Tensor s = v(self);
    at::_index_put_impl_(s, cpu_indices, v(values), accumulate, unsafe);
  });
  return self;
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_index_put_impl_", index_put_impl);
  m.impl("masked_fill_.Scalar", masked_fill_scalar);
  m.impl("masked_fill_.Tensor", masked_fill_tensor);
  m.impl("where.self", where_self);
  m.impl("where.self_out", where_self_out);
  m.impl("index_select", index_select);
  m.impl("index_select.out", index_select_out);
  m.impl("index.Tensor_out", index_out);
  m.impl("nonzero", nonzero);
  m.impl("nonzero.out", nonzero_out);
  m.impl("masked_select", masked_select);
  m.impl("masked_select.out", masked_select_out);
}

}  // namespace torch_sunrise::aten
